// Package sync owns everything that talks to Kubernetes or watches the node:
// where the ConfigMap and the token come from (the API, informers, a manifest
// or a projected file), the reconcile loop every trigger goes through, and
// what the cluster sees (Node condition, Events, metrics, the status file).
// What a file should contain and how it is compared and written is package
// cniconf's business. Where the inputs come from is resolved by the pure
// package sync/installcni (calico-node's DaemonSet into install-cni's
// environment).
//
// The name shadows the standard library's sync, which files here import as
// gosync. The layout of the repository is fixed (cmd/, sync/, cniconf/), and
// the name says what the package does for a user: it syncs the node's CNI
// files with the cluster.
package sync
