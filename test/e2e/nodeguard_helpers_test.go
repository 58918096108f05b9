package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// podToken creates a Pod of the agent's ServiceAccount on node (no kubelet
// runs it; it is deleted at cleanup) and returns the token the kubelet would
// mount into it: bound to the Pod, so the API server adds the Pod's node to
// the token's extra. It fails the test if the node is not there.
func podToken(t *testing.T, ctx context.Context, node string) string {
	t.Helper()
	pods := cp.Client.CoreV1().Pods("kube-system")
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "calico-cni-sync-", Namespace: "kube-system"},
		Spec: corev1.PodSpec{ServiceAccountName: "calico-cni-sync", NodeName: node,
			Containers: []corev1.Container{{Name: "calico-cni-sync", Image: "calico-cni-sync"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		// No kubelet confirms a graceful deletion: delete at once.
		_ = pods.Delete(context.Background(), pod.Name, *metav1.NewDeleteOptions(0))
	})
	tr, err := cp.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "calico-cni-sync", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	must(t, err)
	c, err := kubernetes.NewForConfig(cp.ConfigForToken(tr.Status.Token))
	must(t, err)
	review, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	must(t, err)
	if got := review.Status.UserInfo.Extra[nodeNameExtra]; len(got) != 1 || got[0] != node {
		t.Fatalf("the Pod's token has %s %v, want [%s]: is ServiceAccountTokenPodNodeInfo off?", nodeNameExtra, got, node)
	}
	return tr.Status.Token
}

// kubeletStatus is a Node status as a kubelet reports it.
func kubeletStatus(ip string) corev1.NodeStatus {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	return corev1.NodeStatus{
		Capacity: res, Allocatable: res,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
	}
}

// driftPatch is the patch the agent sends (sync/report.go): its condition
// alone, in a strategic merge patch of status.conditions.
func driftPatch(t *testing.T, status corev1.ConditionStatus, reason string) []byte {
	t.Helper()
	now := metav1.Now()
	return conditionsPatch(t, corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: status, Reason: reason,
		Message: "set by TestNodeGuard", LastHeartbeatTime: now, LastTransitionTime: now})
}

// healthPatch is the agent's patch of CalicoCNICredentialHealthy alone.
func healthPatch(status corev1.ConditionStatus, reason string) []byte {
	now := metav1.Now()
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{Type: "CalicoCNICredentialHealthy",
		Status: status, Reason: reason, Message: "set by TestNodeGuard", LastHeartbeatTime: now, LastTransitionTime: now}}}})
	return b
}

func conditionsPatch(t *testing.T, c ...corev1.NodeCondition) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": c}})
	must(t, err)
	return b
}

// patchStatus sends a strategic merge patch to a Node's status subresource.
func patchStatus(ctx context.Context, c kubernetes.Interface, node string, patch []byte, dryRun bool) error {
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := c.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, opts, "status")
	return err
}

// waitRefused polls do, a dry run, until the policy refuses it with message:
// until the API server has loaded the policy do succeeds, and until RBAC's
// cache has a new binding RBAC refuses it.
func waitRefused(t *testing.T, ctx context.Context, what string, do func(context.Context) error, message string) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		last = do(ctx)
		return last != nil && strings.Contains(last.Error(), nodeGuardDenied), nil
	})
	if err != nil {
		t.Fatalf("%s: the policy did not answer within 2m: last answer %v", what, last)
	}
	if !apierrors.IsForbidden(last) || !strings.Contains(last.Error(), nodeGuardDenied+message) {
		t.Fatalf("%s: want 403 %q, got %v", what, message, last)
	}
}

// grantNodePatch lets the agent's ServiceAccount patch Nodes themselves,
// which no variant of the manifests grants.
func grantNodePatch(t *testing.T, ctx context.Context) {
	t.Helper()
	rbac := cp.Client.RbacV1()
	name := fmt.Sprintf("node-guard-test-%d", seq.Add(1))
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	_, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch"}}}}, metav1.CreateOptions{})
	must(t, err)
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "calico-cni-sync"}}}, metav1.CreateOptions{})
	must(t, err)
}

func condition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func without(cs []corev1.NodeCondition, t corev1.NodeConditionType) []corev1.NodeCondition {
	var out []corev1.NodeCondition
	for _, c := range cs {
		if c.Type != t {
			out = append(out, c)
		}
	}
	return out
}
