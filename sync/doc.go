// Package sync owns everything that talks to Kubernetes or watches the node:
// where the ConfigMap and the token come from (the API, informers, a manifest
// or a projected file), the reconcile loop every trigger goes through, and
// what the cluster sees (Node condition, Events, metrics, the status file).
// What a file should contain and how it is compared and written is package
// cniconf's business.
package sync
