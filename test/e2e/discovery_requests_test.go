package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// TestDiscoveryPassRequests: on a manifest install (no
// calico-system/calico-node), the agent's passes, counted at a proxy in
// front of the API server, ask for no DaemonSet: this node's pod of
// kube-system/calico-node did not change, and the absent candidate is not
// asked for again at each pass. Pods of other controllers on the node
// (kube-proxy, coredns, a bare pod) make no pass at all.
func TestDiscoveryPassRequests(t *testing.T) {
	e := newInstallEnv(t, "kube-system")
	e.requireNoDaemonSet("calico-system", "calico-node")
	e.applyInstall("manifest-v3.32.yaml", cniHostPath(t, e.net))
	node := e.createNodePod(e.daemonSet("kube-system", "calico-node"), nil)
	proxy := harness.NewProxy(t, cp.Config, cp.Host())
	e.kubeconfig = filepath.Join(e.dir, "proxied.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, proxy.Config()))
	// -v 4 logs each trigger with its reason.
	a := e.launchAgentWith(e.nodeEnv(), e.node, e.net, append([]string{binary}, append(e.nodeArgs(), "-v", "4")...))
	e.eventually(60*time.Second, "agent ready", func() error { return a.probe("/readyz") })
	e.waitStatus("inputs from "+node.Name, func(r nodeReport) error {
		if r.Source == nil || r.Source.Pod != node.Name {
			return fmt.Errorf("source %+v", r.Source)
		}
		return nil
	})
	passes := func() float64 {
		n, err := a.Metric("calico_cni_sync_reconciles_total")
		must(t, err)
		return n
	}
	// Start-up traffic is over once no request came for a second.
	seen, since := "", time.Now()
	e.eventually(30*time.Second, "start-up traffic over", func() error {
		counts, _ := proxy.Snapshot()
		if now := fmt.Sprint(counts); now != seen {
			seen, since = now, time.Now()
		}
		if time.Since(since) < time.Second {
			return errorf("requests still coming")
		}
		return nil
	})

	// Three passes, each made by a change of calico-config (watched).
	before, _ := proxy.Snapshot()
	const n = 3
	for i := range n {
		want := passes() + 1
		_, err := e.client.CoreV1().ConfigMaps("kube-system").Patch(e.ctx, "calico-config", types.MergePatchType,
			fmt.Appendf(nil, `{"metadata":{"annotations":{"e2e/touched":"%d"}}}`, i), metav1.PatchOptions{})
		must(t, err)
		e.eventually(30*time.Second, "a pass", func() error {
			if got := passes(); got < want {
				return fmt.Errorf("passes %v, want %v", got, want)
			}
			return nil
		})
	}
	after, _ := proxy.Snapshot()
	var kinds []string
	total := 0
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, d))
			total += d
		}
	}
	t.Logf("%d passes made %d requests: %s", n, total, strings.Join(kinds, " "))
	if d := after["GET daemonsets"] - before["GET daemonsets"]; d != 0 {
		t.Errorf("%d passes read DaemonSets %d times; want none (the pod did not change, calico-system/calico-node is absent)", n, d)
	}

	// Other pods on this node in kube-system: kube-proxy's (a DaemonSet),
	// a bare one. Then calico-node's pod changes: its event comes after
	// theirs on the same watch, so once its pass is triggered theirs would
	// have been too.
	mark := len(a.Output())
	controller := true
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{GenerateName: "kube-proxy-", Namespace: "kube-system",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-proxy", UID: "0b0e6e2c-0000-4000-8000-000000000001", Controller: &controller}}},
			Spec: corev1.PodSpec{NodeName: e.node, Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.35.0"}}}},
		{ObjectMeta: metav1.ObjectMeta{GenerateName: "debug-", Namespace: "kube-system"},
			Spec: corev1.PodSpec{NodeName: e.node, Containers: []corev1.Container{{Name: "debug", Image: "busybox"}}}},
	} {
		created, err := e.client.CoreV1().Pods("kube-system").Create(e.ctx, p, metav1.CreateOptions{})
		must(t, err)
		t.Cleanup(func() { forceDeletePod(created) })
	}
	_, err := e.client.CoreV1().Pods("kube-system").Patch(e.ctx, node.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"e2e/touched":"1"}}}`), metav1.PatchOptions{})
	must(t, err)
	e.eventually(30*time.Second, "the calico-node pod's trigger", func() error {
		if !strings.Contains(a.Output()[mark:], `why="calico-node pods on this node updated"`) {
			return errorf("not yet")
		}
		return nil
	})
	if added := strings.Count(a.Output()[mark:], `why="calico-node pods on this node added"`); added != 0 {
		t.Errorf("pods of other controllers made %d passes; want none", added)
	}
}
