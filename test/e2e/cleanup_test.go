package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCleanup: after the agent is gone, cleanup removes its Lease and its
// Node conditions (CalicoCNIConfigDrift and CalicoCNICredentialHealthy),
// for one node or for all, and leaves the CNI files, the
// other nodes and the other conditions alone; it refuses while an agent
// pod is still on the node.
func TestCleanup(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	other := e.addNode("other")
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitHealthy(e.node, corev1.ConditionTrue, "CredentialOK")
	e.eventually(30*time.Second, "the agent's Lease", func() error {
		if len(e.agentLeases(e.node)) == 0 {
			return errorf("no Lease for %s", e.node)
		}
		return nil
	})
	a.stop()
	// A condition of another owner, as the kubelet's: it must stay.
	ready, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}})
	must(t, err)
	_, err = e.client.CoreV1().Nodes().PatchStatus(e.ctx, e.node, ready)
	must(t, err)
	e.setCondition(other, corev1.ConditionTrue, "Drifted", "edited", time.Now())
	e.setLease(other, time.Now())
	files := map[string][]byte{}
	for _, name := range []string{"10-calico.conflist", "calico-kubeconfig"} {
		b, err := os.ReadFile(filepath.Join(e.net, name))
		must(t, err)
		files[name] = b
	}
	cleanup := func(args ...string) (int, string) {
		return e.run(append([]string{"cleanup", "--kubeconfig", e.kubeconfig}, args...)...)
	}

	// Neither a node nor --all: refused, as is both.
	if code, out := cleanup(); code != 2 || !strings.Contains(out, "--node-name NODE or --all") {
		t.Errorf("cleanup with no node: exit %d: %s", code, out)
	}
	// An agent pod on the node, its controller alive (none: a bare pod):
	// refused, nothing removed.
	pods := e.client.CoreV1().Pods("default")
	var pod *corev1.Pod
	pod, err = pods.Create(e.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "calico-cni-sync-", Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
		Spec:       corev1.PodSpec{NodeName: e.node, Containers: []corev1.Container{{Name: "calico-cni-sync", Image: "calico-cni-sync"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	if code, out := cleanup("--node-name", e.node); code != 2 || !strings.Contains(out, "the agent still runs (pod default/"+pod.Name) {
		t.Errorf("cleanup with the agent's pod on the node: exit %d: %s", code, out)
	}
	if len(e.agentLeases(e.node)) == 0 || !e.hasAgentCondition(e.node) {
		t.Fatal("a refused cleanup removed something")
	}
	zero := int64(0)
	must(t, pods.Delete(e.ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	e.eventually(30*time.Second, "the pod gone", func() error {
		if _, err := pods.Get(e.ctx, pod.Name, metav1.GetOptions{}); err == nil {
			return errorf("pod %s still there", pod.Name)
		}
		return nil
	})

	// One node: its Lease and condition go; the other node's stay.
	code, out := cleanup("--node-name", e.node)
	if code != 0 || !strings.Contains(out, "calico-cni-sync-"+e.node+" deleted") || !strings.Contains(out, "node/"+e.node+" condition CalicoCNIConfigDrift removed") ||
		!strings.Contains(out, "node/"+e.node+" condition CalicoCNICredentialHealthy removed") {
		t.Fatalf("cleanup --node-name: exit %d: %s", code, out)
	}
	t.Logf("cleanup --node-name %s:\n%s", e.node, out)
	if l := e.agentLeases(e.node); len(l) != 0 {
		t.Errorf("Leases left for %s: %v", e.node, l)
	}
	if e.hasAgentCondition(e.node) {
		t.Errorf("the condition is still on %s", e.node)
	}
	if len(e.agentLeases(other)) == 0 || !e.hasAgentCondition(other) {
		t.Errorf("cleanup --node-name %s touched %s", e.node, other)
	}
	// Again: nothing left, and it says so.
	if code, out := cleanup("--node-name", e.node); code != 0 || !strings.Contains(out, "Nothing to clean up") {
		t.Errorf("a second cleanup: exit %d: %s", code, out)
	}

	// Every node.
	if code, out := cleanup("--all"); code != 0 || !strings.Contains(out, "node/"+other+" condition") {
		t.Fatalf("cleanup --all: exit %d: %s", code, out)
	}
	if len(e.agentLeases(other)) != 0 || e.hasAgentCondition(other) {
		t.Errorf("cleanup --all left %s's Lease or condition", other)
	}
	// The nodes' other conditions and the CNI files are untouched.
	n, err := e.client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
	must(t, err)
	if len(n.Status.Conditions) != 1 || n.Status.Conditions[0].Type != corev1.NodeReady {
		t.Errorf("%s's conditions after cleanup: %v, want Ready alone", e.node, n.Status.Conditions)
	}
	for name, before := range files {
		after, err := os.ReadFile(filepath.Join(e.net, name))
		must(t, err)
		if string(after) != string(before) {
			t.Errorf("cleanup changed %s", name)
		}
	}
}

// agentLeases names the agent's Leases for node, in any namespace.
func (e *env) agentLeases(node string) []string {
	e.t.Helper()
	list, err := e.client.CoordinationV1().Leases(metav1.NamespaceAll).List(e.ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
	must(e.t, err)
	var out []string
	for _, l := range list.Items {
		if l.Name == "calico-cni-sync-"+node {
			out = append(out, l.Namespace+"/"+l.Name)
		}
	}
	return out
}

func (e *env) hasAgentCondition(node string) bool {
	e.t.Helper()
	n, err := e.client.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{})
	must(e.t, err)
	for _, c := range n.Status.Conditions {
		if c.Type == "CalicoCNIConfigDrift" || c.Type == "CalicoCNICredentialHealthy" {
			return true
		}
	}
	return false
}
