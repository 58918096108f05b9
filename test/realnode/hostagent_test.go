package realnode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// hostAgent is another node of the cluster, without a kubelet: a Node
// object and the agent's binary (the one in the image) run as a process on
// the host, as the agent's ServiceAccount, in a mount namespace of its own
// where a directory of the test's is /etc/cni/net.d: the node's own CNI
// directory, at the host path calico-node's DaemonSet names (the agent
// refuses to write anywhere else).
type hostAgent struct {
	c    *cluster
	node string
	net  string // its CNI directory
	proc *harness.Process
}

// startHostAgent registers node and starts its agent with the extra args,
// and waits until the agent is ready. The Node has no kubernetes.io/os
// label, so that neither the agent's DaemonSet nor calico-node's schedules
// a pod there that no kubelet would run: the agent renders from
// calico-node's pod template, as for a node whose pod is not there yet.
func (c *cluster) startHostAgent(node string, extra []string) *hostAgent {
	c.t.Helper()
	if _, err := c.cp.Client.CoreV1().Nodes().Create(c.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = c.cp.Client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	dir := filepath.Join(c.t.TempDir(), node)
	a := &hostAgent{c: c, node: node, net: filepath.Join(dir, "net.d")}
	if err := os.MkdirAll(a.net, 0o755); err != nil {
		c.t.Fatal(err)
	}
	// A token of the agent's ServiceAccount not bound to a pod: the lease
	// guard lets it write any calico-cni-sync-<node> Lease.
	token, err := c.cp.TokenFor(c.ctx, "kube-system", "calico-cni-sync", time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.cp.WriteKubeconfig(kubeconfig, c.cp.ConfigForToken(token)); err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount --bind "$0" ` + CNIDir + ` && exec "$@"`, a.net,
		c.agentBinary(), "--kubeconfig", kubeconfig, "--node-name", node, "--cni-net-dir", CNIDir,
		"--state-dir", filepath.Join(dir, "state"), "--backup-dir", filepath.Join(dir, "backups"),
		"--status-file", filepath.Join(dir, "status.json"), "--http-addr", "127.0.0.1:0", "-v", "1"}, extra...)
	// The address the kubelet gives the DaemonSet's pods, which the agent
	// writes into calico-kubeconfig.
	environ := append(os.Environ(), "KUBERNETES_SERVICE_HOST="+controlplane.ServiceIP, "KUBERNETES_SERVICE_PORT=443")
	a.proc, err = harness.StartProcess(args, environ)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if err := a.proc.Stop(); err != nil {
			c.t.Errorf("agent of %s: %v", node, err)
		}
		out := a.proc.Output()
		if strings.Contains(out, token) || strings.Contains(out, "eyJ") {
			c.t.Errorf("the agent of %s logged a token", node)
		}
		if c.t.Failed() {
			c.t.Logf("--- agent of %s ---\n%s", node, harness.Tail(out))
		}
	})
	c.waitFor("the agent of "+node+" serving", time.Minute, func(context.Context) (bool, error) {
		err := a.proc.Serving()
		return err == nil, err
	})
	c.waitFor("the agent of "+node+" ready", time.Minute, func(context.Context) (bool, error) {
		err := a.proc.Probe("/readyz")
		return err == nil, err
	})
	return a
}

// conf is the node's 10-calico.conflist and its modification time.
func (a *hostAgent) conf() ([]byte, time.Time) {
	a.c.t.Helper()
	path := filepath.Join(a.net, "10-calico.conflist")
	b, err := os.ReadFile(path)
	if err != nil {
		a.c.t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		a.c.t.Fatal(err)
	}
	return b, fi.ModTime()
}
