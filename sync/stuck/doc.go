// Package stuck judges which pods the stale-token story leaves stuck: a pod
// that waits for a Secret that was deleted (the legacy token Secret an
// operator or a cleanup job regenerated under a new name), and a pod whose
// sandbox the CNI plugin could not set up or tear down because the API server
// rejected its token. It says why, who owns the pod and how to fix it.
//
// It is pure: it reads API objects it is given and a lookup for owners, and
// lists, reads, prompts and deletes nothing. Listing the cluster in bounded
// memory, the prompt and the deletions are the command's business
// (cmd/calico-cni-sync, report --stuck).
package stuck
