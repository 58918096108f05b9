package stuck

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// Finding is one stuck pod as report --stuck prints it.
type Finding struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	Why       Why    `json:"why"`
	// Secret names the missing Secrets (comma-separated when several);
	// empty for CNIUnauthorized.
	Secret string `json:"secret"`
	// Owner is the top controller (Deployment/x), "" for a bare pod.
	Owner string `json:"owner"`
	// Fix says what to do, and the evidence.
	Fix string `json:"fix"`
}

// TokenEvidence is what the node's CalicoCNIConfigDrift condition says
// about the CNI's token, when it says the token was stale or rejected, or
// that RBAC refuses the plugin's request (CNIForbidden: the fix then names
// the ClusterRoleBinding, not the token); "" otherwise (no condition, or
// another state). The condition is decoded in
// package sync/status.
func TokenEvidence(node string, cond *corev1.NodeCondition) string {
	return status.TokenEvidence(node, cond)
}

// Describe turns a verdict into the finding report --stuck prints: the fix
// for the pod given its owner, then the evidence (the kubelet's events and
// tokenEvidence, the node's condition as TokenEvidence gives it).
func Describe(pod *corev1.Pod, v Verdict, owner, tokenEvidence string) Finding {
	f := Finding{Namespace: pod.Namespace, Pod: pod.Name, Node: pod.Spec.NodeName, Why: v.Why,
		Secret: strings.Join(v.Secrets, ","), Owner: owner}
	del := fmt.Sprintf("kubectl delete pod -n %s %s", pod.Namespace, pod.Name)
	var fix []string
	switch {
	case v.Why == CNIUnauthorized && !v.Terminating && strings.Contains(tokenEvidence, " condition is "+status.ReasonCNIForbidden+":"):
		// The token works; RBAC refuses the plugin's request. No new
		// token and no new sandbox helps until the binding is back.
		fix = append(fix, fmt.Sprintf("the cause is RBAC, not the token: the API server refuses the CNI plugin's request on node %s; restore the ClusterRoleBinding the evidence names, after which the kubelet's next sandbox attempt succeeds (deleting the pod, %s, does not help before)", f.Node, del))
	case v.Terminating && owner != "":
		fix = append(fix, fmt.Sprintf("force-delete the pod: it is already being deleted and %s has replaced it; the kubelet keeps tearing its sandbox down once the CNI's token works (%s --grace-period=0 --force)", owner, del))
	case v.Terminating:
		fix = append(fix, fmt.Sprintf("bare pod, already being deleted: the kubelet finishes once the CNI's token works; to remove it now, %s --grace-period=0 --force, and recreate it from its manifest if it is still wanted", del))
	case owner != "" && v.Why == MissingSecret:
		fix = append(fix, fmt.Sprintf("delete the pod: %s recreates it, mounting the Secrets as they are now (%s); if its template still names %s, point it at the new Secret first", owner, del, f.Secret))
	case owner != "":
		fix = append(fix, fmt.Sprintf("delete the pod: %s recreates it and the kubelet sets up a new sandbox with the CNI's current token (%s)", owner, del))
	default:
		fix = append(fix, fmt.Sprintf("bare pod: deleting it loses it; it must be recreated from its manifest (%s, then apply its manifest again)", del))
	}
	if v.MountMessage != "" {
		fix = append(fix, "evidence: the kubelet's "+ReasonFailedMount+": "+v.MountMessage)
	}
	if v.Sandbox != nil {
		fix = append(fix, fmt.Sprintf("evidence: the kubelet's latest %s (%s): %s", v.Sandbox.Reason, v.Sandbox.Time.UTC().Format(time.RFC3339), v.Sandbox.Message))
	}
	if tokenEvidence != "" {
		fix = append(fix, "evidence: "+tokenEvidence)
	}
	f.Fix = cniconf.Redact(strings.Join(fix, "; "))
	return f
}
