// Package inputs decides, once, where a pass's inputs come from, and reads
// them: calico-node's DaemonSet resolved into install-cni's environment
// (package sync/installcni), calico-config, a manifest or ConfigMap file;
// the token from a file, a Secret (by request or by watch) or the
// TokenRequest API; and the API server's verdict on a token
// (a SelfSubjectReview).
//
// Select is the one place where --source and --token-source are decided,
// for the agent, --once, drift and render alike. It makes no request:
// --source=auto is decided at each pass, next to the read of the DaemonSet
// it depends on, so an agent started before calico-node's DaemonSet exists
// follows it once it does, and an agent whose API server is away starts
// and reports the error through its passes. The agent's sources read
// informers that a Watch starts on first use and that trigger a pass when
// what they cache changes; the others make one request per read.
//
// The install kind (Kind: manifest, operator, canal, seed ConfigMap) is
// decided once, from the DaemonSet, where the inputs are read, and carried
// in SourceInfo. Adding an install kind touches these product files:
//
//   - sync/installcni/resolve.go: Candidates, the DaemonSets looked for;
//   - sync/inputs/kind.go: the Kind, KindOf, where a lasting change is
//     made and the conf names its install-cni writes;
//   - sync/suggest, when its lasting change goes into a resource of its own
//     (as operator.go does for the tigera operator's Installation).
//
// The help text and the error messages list the candidates from
// CandidateList.
//
// It imports sync/installcni and sync/token, and nothing that runs a pass or
// reports one (sync/reconcile, sync/status, sync/agent) or any of cmd.
package inputs
