package realnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// cluster is one test's control plane and real node.
type cluster struct {
	t    *testing.T
	ctx  context.Context
	cp   *controlplane.ControlPlane
	node *Node
	dir  string
}

func newCluster(t *testing.T) *cluster {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	t.Cleanup(cancel)
	cp, err := controlplane.Start(ctx, controlplane.Options{Logf: t.Logf, Nodes: true})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	c := &cluster{t: t, ctx: ctx, cp: cp, dir: t.TempDir()}
	c.node = Start(t, cp)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpForFailure()
		}
	})
	return c
}

// kubectl runs test/bin/kubectl as admin.
func (c *cluster) kubectl(args ...string) (string, error) {
	cmd := exec.CommandContext(c.ctx, filepath.Join(c.node.bin, "kubectl"), append([]string{"--kubeconfig", c.cp.AdminKubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustKubectl(args ...string) string {
	c.t.Helper()
	out, err := c.kubectl(args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitFor polls cond every 200 ms until it holds or the deadline passes.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	c.t.Helper()
	begin := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(c.ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
		}
		return ok, nil
	})
	if err != nil {
		c.t.Fatalf("waiting %v for %s: %v (last error: %v)", timeout, what, err, last)
	}
	c.t.Logf("%s after %v", what, time.Since(begin).Round(time.Millisecond))
}

// installEdit changes a fixture's object before it is applied; false drops it.
type installEdit func(*unstructured.Unstructured) bool

// applyInstall applies an install fixture as its user would, after the
// edits, with kubectl apply --server-side. The operator's fixture carries
// the real cluster's Service address (10.96.0.1, never dialled here): it
// becomes this cluster's, which the node routes to the API server.
func (c *cluster) applyInstall(fixture string, edits ...installEdit) {
	c.t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.node.repo, "test", "testdata", "fixtures", "installs", fixture))
	if err != nil {
		c.t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("10.96.0.1"), []byte(controlplane.ServiceIP))
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var doc bytes.Buffer
	for {
		part, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(part, &u.Object); err != nil {
			c.t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		keep := true
		for _, e := range edits {
			keep = keep && e(u)
		}
		if !keep {
			continue
		}
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			c.t.Fatal(err)
		}
		doc.WriteString("---\n")
		doc.Write(y)
	}
	path := filepath.Join(c.dir, fixture)
	if err := os.WriteFile(path, doc.Bytes(), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.mustKubectl("apply", "--server-side", "--field-manager", "calico-install", "-f", path)
}

// applyClusterInformation serves Calico's ClusterInformation and creates
// "default", as calico-node does on a real cluster.
func (c *cluster) applyClusterInformation() {
	c.t.Helper()
	c.mustKubectl("apply", "--server-side", "-f", filepath.Join("testdata", "clusterinformation.yaml"))
	c.waitFor("ClusterInformation served", time.Minute, func(context.Context) (bool, error) {
		_, err := c.kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "clusterinformation-default.yaml"))
		return err == nil, err
	})
}

// agentArchive is the image make image builds, which the test deploys.
func (c *cluster) agentArchive() (archive, tag string) {
	c.t.Helper()
	v, err := os.ReadFile(filepath.Join(c.node.repo, "VERSION"))
	if err != nil {
		c.t.Fatal(err)
	}
	version := strings.TrimSpace(string(v))
	archive = filepath.Join(c.node.repo, "bin", "calico-cni-sync-"+version+".oci.tar")
	if _, err := os.Stat(archive); err != nil {
		c.t.Fatalf("the agent's image archive: %v (make image builds it; make test runs make image)", err)
	}
	return archive, "calico-cni-sync:" + version
}

// agentBinary is the binary in the image make image built, for this machine.
func (c *cluster) agentBinary() string {
	return filepath.Join(c.node.repo, "bin", "image", "linux-"+goarch(), "calico-cni-sync")
}

// condition is the agent's Node condition, or nil.
func (c *cluster) condition(ctx context.Context) (*corev1.NodeCondition, error) {
	node, err := c.cp.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == "CalicoCNIConfigDrift" {
			return &node.Status.Conditions[i], nil
		}
	}
	return nil, nil
}

func (c *cluster) waitCondition(reason string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor("condition reason "+reason, timeout, func(ctx context.Context) (bool, error) {
		cond, err := c.condition(ctx)
		if err != nil || cond == nil {
			return false, err
		}
		if cond.Reason != reason {
			return false, fmt.Errorf("reason %s: %s", cond.Reason, cond.Message)
		}
		return true, nil
	})
}

// nodeEvent waits for an event on the Node with reason.
func (c *cluster) waitNodeEvent(reason string, timeout time.Duration) corev1.Event {
	c.t.Helper()
	var found corev1.Event
	c.waitFor("Node event "+reason, timeout, func(ctx context.Context) (bool, error) {
		evs, err := c.cp.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + Name + ",reason=" + reason})
		if err != nil || len(evs.Items) == 0 {
			return false, err
		}
		found = evs.Items[0]
		return true, nil
	})
	return found
}

// testPod creates a pod on the node (a stand-in image that sleeps) in
// default and returns its name.
func (c *cluster) testPod(name string) string {
	c.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      Name,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "main", Image: "quay.io/calico/node:v3.32.1", ImagePullPolicy: corev1.PullNever,
				Command: []string{"/opt/bin/flanneld"}, // the stand-in sleeps under this name
			}},
		},
	}
	if _, err := c.cp.Client.CoreV1().Pods("default").Create(c.ctx, pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create pod %s: %v", name, err)
	}
	return name
}

// waitPodRunning waits until the pod runs with an address on the bridge.
func (c *cluster) waitPodRunning(name string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor("pod "+name+" Running", timeout, func(ctx context.Context) (bool, error) {
		p, err := c.cp.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("phase %s", p.Status.Phase)
		}
		if !strings.HasPrefix(p.Status.PodIP, "10.244.77.") {
			return false, fmt.Errorf("pod IP %q is not on the node's bridge", p.Status.PodIP)
		}
		return true, nil
	})
}

// sandboxFailure waits for the kubelet's FailedCreatePodSandBox event on a
// pod and returns its message.
func (c *cluster) sandboxFailure(pod string, timeout time.Duration) string {
	c.t.Helper()
	var msg string
	c.waitFor("FailedCreatePodSandBox on "+pod, timeout, func(ctx context.Context) (bool, error) {
		evs, err := c.cp.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + pod + ",reason=FailedCreatePodSandBox"})
		if err != nil || len(evs.Items) == 0 {
			return false, err
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	return msg
}

// agentPod waits for the agent's pod on the node to be Ready and returns it.
func (c *cluster) agentPod(ns string, timeout time.Duration) *corev1.Pod {
	c.t.Helper()
	var pod *corev1.Pod
	c.waitFor("the agent's pod Ready", timeout, func(ctx context.Context) (bool, error) {
		pods, err := c.cp.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					pod = p
					return true, nil
				}
			}
			return false, fmt.Errorf("pod %s: phase %s, %v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		}
		return false, errors.New("no pod yet")
	})
	return pod
}

// readFile reads a file of the node's CNI directory.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(CNIDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonField reads a dotted path of a JSON document.
func jsonField(t *testing.T, doc []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil {
				return nil
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// dumpForFailure logs what a failing run needs to be understood.
func (c *cluster) dumpForFailure() {
	out, _ := c.kubectl("get", "nodes,pods,ds", "-A", "-o", "wide")
	c.t.Logf("cluster state:\n%s", out)
	out, _ = c.kubectl("get", "events", "-A", "--sort-by", ".lastTimestamp")
	c.t.Logf("events:\n%s", out)
	for _, name := range []string{"kubelet", "containerd"} {
		b, _ := os.ReadFile(filepath.Join(c.node.Logs(), name+".log"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("--- tail of %s.log ---\n%s", name, b)
	}
	entries, _ := os.ReadDir(filepath.Join(c.node.dir, "pod-logs"))
	for _, e := range entries {
		if strings.Contains(e.Name(), "calico-cni-sync") {
			_ = filepath.WalkDir(filepath.Join(c.node.dir, "pod-logs", e.Name()), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(p)
					if len(b) > 6000 {
						b = b[len(b)-6000:]
					}
					c.t.Logf("--- %s ---\n%s", p, b)
				}
				return nil
			})
		}
	}
}
