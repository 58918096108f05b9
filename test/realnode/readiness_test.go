package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReadinessLine draws readiness's line on the real node: a bad
// calico-config is the cluster's input, so the agent stays Ready and
// reports Error; a rollout of the agent that gives it a fault of its own
// (its state directory mounted read-only) leaves the rolled pod running
// but NotReady, so the rollout does not complete, until it is undone.
func TestReadinessLine(t *testing.T) {
	c := newCluster(t)
	const ns = "kube-system"
	inst := manifestV332
	inst.setUp(c)
	c.mustKubectl("apply", "--server-side", "-k", filepath.Join(c.node.repo, inst.manifests))
	c.agentPod(ns, 3*time.Minute)
	c.waitCondition("InSync", time.Minute)
	c.mustKubectl("-n", ns, "rollout", "status", "daemonset/calico-cni-sync", "--timeout", "1m")

	// The cluster's input goes bad: the agent reports it and stays Ready.
	cms := c.cp.Client.CoreV1().ConfigMaps(ns)
	good, err := cms.Get(c.ctx, "calico-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := good.DeepCopy()
	bad.Data["cni_network_config"] = `{"name": "k8s-pod-network", "plugins": [`
	if _, err := cms.Update(c.ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitCondition("Error", time.Minute)
	c.waitNodeEvent("RenderFailed", time.Minute)
	if code, body := c.readyz(); code != http.StatusOK {
		t.Fatalf("with a bad calico-config /readyz says %d %q, want 200: the cluster's input is not the agent's fault", code, body)
	}
	if p := c.agentPodNow(ns); p == nil || !podReady(p) {
		t.Fatalf("with a bad calico-config the agent's pod is not Ready: %v", p)
	}
	t.Log("bad calico-config: condition Error, RenderFailed, /readyz 200, pod Ready")
	fixed, err := cms.Get(c.ctx, "calico-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fixed.Data = good.Data
	if _, err := cms.Update(c.ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitCondition("InSync", time.Minute)

	// A rollout that breaks the agent: its state directory read-only.
	before := c.agentPodNow(ns)
	c.mustKubectl("-n", ns, "patch", "daemonset/calico-cni-sync", "--type=json", "-p",
		`[{"op": "add", "path": "/spec/template/spec/containers/0/volumeMounts/1/readOnly", "value": true}]`)
	var rolled *corev1.Pod
	c.waitFor("the rolled pod running, NotReady, saying why", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p := c.agentPodNow(ns)
		if p == nil || p.UID == before.UID {
			return false, errors.New("not rolled yet")
		}
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
			return false, fmt.Errorf("pod %s not running: %v", p.Name, p.Status.ContainerStatuses)
		}
		code, body := c.readyz()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "--state-dir") {
			return false, fmt.Errorf("/readyz %d %q", code, body)
		}
		rolled = p
		t.Logf("/readyz of the rolled pod: %d %s", code, strings.TrimSpace(body))
		return true, nil
	})
	// The kubelet sees it too, and the DaemonSet counts the pod unavailable.
	c.waitFor("the kubelet's readiness probe failing", 2*time.Minute, func(ctx context.Context) (bool, error) {
		evs, err := c.cp.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + rolled.Name + ",reason=Unhealthy"})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, "Readiness probe failed") {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d Unhealthy events", len(evs.Items))
	})
	p := c.agentPodNow(ns)
	if p == nil || p.UID != rolled.UID || podReady(p) || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("the rolled pod should run NotReady without restarts: %v", p)
	}
	ds, err := c.cp.Client.AppsV1().DaemonSets(ns).Get(c.ctx, "calico-cni-sync", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Status.NumberAvailable != 0 || ds.Status.NumberUnavailable != 1 {
		t.Errorf("DaemonSet status: %d available, %d unavailable; want 0 and 1", ds.Status.NumberAvailable, ds.Status.NumberUnavailable)
	}
	if out, err := c.kubectl("-n", ns, "rollout", "status", "daemonset/calico-cni-sync", "--timeout", "5s"); err == nil {
		t.Errorf("the rollout of a broken agent completed: %s", out)
	} else {
		t.Logf("rollout status: %s", strings.TrimSpace(out))
	}

	// Undone, the agent is Ready again and the rollout completes.
	c.mustKubectl("-n", ns, "rollout", "undo", "daemonset/calico-cni-sync")
	c.mustKubectl("-n", ns, "rollout", "status", "daemonset/calico-cni-sync", "--timeout", "2m")
	if code, body := c.readyz(); code != http.StatusOK {
		t.Errorf("after the undo /readyz says %d %q", code, body)
	}
}

// readyz asks the agent's /readyz on the node (host network, :9645).
func (c *cluster) readyz() (int, string) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9645/readyz", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// agentPodNow is the agent's pod on the node not being deleted, or nil.
func (c *cluster) agentPodNow(ns string) *corev1.Pod {
	pods, err := c.cp.Client.CoreV1().Pods(ns).List(c.ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
	if err != nil {
		return nil
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			return &pods.Items[i]
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
