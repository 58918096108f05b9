// Package plan says what applying a ConfigMap would change in the CNI files
// of every node, before it is applied: the files install-cni would write
// for each node are rendered from the inputs as they are, and again with the
// proposed ConfigMap in place of the one of its name, and compared, as
// drift compares a file with its render. Nodes are grouped by outcome: the
// install, the paths that change, whether a runtime would load the new
// config.
//
// It writes nothing and reads no token: both renders carry the same
// stand-in, since a token is not what a ConfigMap changes. The cluster is
// read once (the DaemonSets, each one's pods in a single list, the
// ConfigMaps and ServiceAccounts they refer to), however many nodes are
// rendered.
//
// It imports sync/inputs and cniconf, and nothing that runs a pass or
// reports one (sync/reconcile, sync/status, sync/agent, sync/stuck) or any
// of cmd.
package plan
