// Package stuck finds the pods the stale-token story leaves stuck: a pod
// that waits for a Secret that was deleted (the legacy token Secret an
// operator or a cleanup job regenerated under a new name), and a pod whose
// sandbox the CNI plugin could not set up or tear down because the API server
// rejected its token. It says why, who owns the pod and how to fix it.
//
// Judge, Describe and their helpers are pure: they read API objects they are
// given and a lookup for owners. Scan pages through the cluster in bounded
// memory (scan.go) and reads the nodes' condition through package
// sync/status, which decodes it. The prompt and the deletions are the
// command's business (cmd/calico-cni-sync, report --stuck). The package
// must not import sync/agent.
package stuck
