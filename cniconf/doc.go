// Package cniconf owns everything calico-cni-sync knows about the files in
// the CNI configuration directory, and nothing about Kubernetes: it renders
// Calico's cni_network_config template exactly as Calico's install-cni does,
// builds the calico-kubeconfig, validates a config the way libcni and the
// container runtimes load it, classifies the file on disk against what should
// be there (InSync, Missing, StaleToken, Outdated, Corrupt, Drifted,
// Shadowed), and writes files atomically with backups and a token-free record
// of what was last written.
//
// It imports no client-go package. Where the inputs come from (a ConfigMap
// informer, a manifest on disk, a token Secret or a projected file) is the
// business of package sync.
//
// Decisions where Calico's install-cni and the product contract are silent:
//
//   - Every file is written with mode 0600, also a conf without a token
//     (install-cni writes those 0644): only root reads them.
//   - Token fields are learned from the template: wherever
//     __SERVICEACCOUNT_TOKEN__ sits, with the text around it in that string.
//   - The record in the state directory describes the last file rendered from
//     the ConfigMap, not a report-policy merge: after the token inside a hand
//     edit is replaced, the edit still differs from the record and stays
//     Drifted, so a later ConfigMap change never overwrites it.
//   - Backups are kept per managed file name: the newest 20 of each.
package cniconf
