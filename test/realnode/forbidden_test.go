package realnode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestForbiddenOnTheRealNode: the CNI account's ClusterRoleBinding deleted
// on the real node. The token in calico-kubeconfig still authenticates, but
// Calico's first request (a GET of clusterinformations/default) is refused
// with a 403: the plugin fails ADD with libcalico-go's words, the kubelet's
// FailedCreatePodSandBox event says so, and the pod sticks in
// ContainerCreating. The agent, deployed from its image with
// --credential-probe=true, --probe-on-sandbox-failure and a token check
// period of an hour (so only the sandbox failure can explain what it
// does), probes at that event and says
// CNIForbidden in the node condition; it does not touch calico-kubeconfig,
// since no token fixes RBAC. The binding restored, the pod starts.
func TestForbiddenOnTheRealNode(t *testing.T) {
	c := newCluster(t)
	inst := manifestV332
	inst.setUp(c)
	// The manifests with the sandbox-probe Component, as an operator adds
	// it: the flag and the grant to read the kubelet's Events.
	want := []string{"--probe-on-sandbox-failure", "--credential-probe=true", "--token-check-period=1h"}
	if pod := c.deployAgent(inst.manifests, []string{"manifests/components/sandbox-probe"}, want[1:]); !containsAll(pod.Spec.Containers[0].Args, want) {
		t.Fatalf("the agent runs with %q, want %q among them", pod.Spec.Containers[0].Args, want)
	}
	c.waitFor("node Ready", time.Minute, func(ctx context.Context) (bool, error) { return c.node.Ready(ctx) })
	c.waitCondition("InSync", time.Minute)

	kubeconfig := filepath.Join(CNIDir, "calico-kubeconfig")
	content := readFile(t, "calico-kubeconfig")
	before, err := os.Stat(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	bindings := c.cp.Client.RbacV1().ClusterRoleBindings()
	binding, err := bindings.Get(c.ctx, "calico-cni-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bindings.Delete(c.ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	account := strings.Replace(inst.account, "/", ":", 1)
	c.waitFor("the CNI account refused", 30*time.Second, func(ctx context.Context) (bool, error) {
		r, err := c.cp.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + account, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "get", Group: "crd.projectcalico.org", Resource: "clusterinformations", Name: "default"}}}, metav1.CreateOptions{})
		return err == nil && !r.Status.Allowed, err
	})
	if cond, err := c.condition(c.ctx); err != nil || cond == nil || cond.Reason != "InSync" {
		t.Fatalf("before any sandbox failure the condition is %+v (%v), want InSync", cond, err)
	}

	stuck := c.testPod("forbidden")
	msg := c.sandboxFailure(stuck, 2*time.Minute)
	failed := time.Now()
	if !strings.Contains(msg, `plugin type="calico"`) || !strings.Contains(msg, "error getting ClusterInformation: connection is unauthorized") ||
		!strings.Contains(msg, "forbidden") {
		t.Fatalf("FailedCreatePodSandBox says %q, want Calico's refused ClusterInformation", msg)
	}
	c.waitCondition("CNIForbidden", time.Minute)
	t.Logf("figure: FailedCreatePodSandBox -> CNIForbidden %v (token check period 1h)", time.Since(failed).Round(time.Millisecond))
	cond, err := c.condition(c.ctx)
	if err != nil || !strings.Contains(cond.Message, "get clusterinformations.crd.projectcalico.org") || !strings.Contains(cond.Message, "ClusterRoleBinding calico-cni-plugin") {
		t.Fatalf("CNIForbidden says %+v (%v), want the refused access and the binding to check", cond, err)
	}
	p, err := c.cp.Client.CoreV1().Pods("default").Get(c.ctx, stuck, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cs := p.Status.ContainerStatuses; p.Status.Phase != corev1.PodPending || len(cs) != 1 || cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "ContainerCreating" {
		t.Fatalf("pod %s: phase %s, %+v; want Pending in ContainerCreating", stuck, p.Status.Phase, p.Status.ContainerStatuses)
	}
	after, err := os.Stat(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || string(readFile(t, "calico-kubeconfig")) != string(content) {
		t.Fatalf("the agent rewrote calico-kubeconfig for a forbidden credential (mtime %v, was %v)", after.ModTime(), before.ModTime())
	}

	binding.ResourceVersion, binding.UID = "", ""
	if _, err := bindings.Create(c.ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPodRunning(stuck, 3*time.Minute)
	if got := readFile(t, "calico-kubeconfig"); string(got) != string(content) {
		t.Fatal("calico-kubeconfig changed after the binding came back")
	}
	t.Logf("binding restored: pod %s Running, calico-kubeconfig untouched throughout", stuck)
}
