package readme

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
)

// The README's cluster commands (the repair of a node and the uninstall)
// run against a real control plane. What needs a kubelet or a node is
// stood in for on this machine: `kubectl exec` into the agent's pod runs
// the binary here, with the pod's environment and its host directories
// under node/, and `scp` to the node copies into node/.

// execShim is the kubectl the README's commands run: `exec` runs the
// command after `--` here, as the agent's container would (its binary at
// /calico-cni-sync, NODE_NAME and the kubelet's API address in its
// environment, the host's /etc/cni and /var/lib/calico-cni-sync mounted);
// anything else goes to the real kubectl. The API address is the real
// cluster's Service address, which must not be dialled here: the agent
// judges the token on disk by a review with its own server
// (--credential-probe=false), not by the plugin's request to that address.
const execShim = `#!/bin/bash
set -euo pipefail
case " $* " in *" exec "*) ;; *) exec "$REAL_KUBECTL" "$@" ;; esac
args=() after=0
for a in "$@"; do
  if [ $after = 1 ]; then
    a=${a//\/var\/lib\/calico-cni-sync/$NODE_ROOT\/var\/lib\/calico-cni-sync}
    [ "$a" = /calico-cni-sync ] && a=$AGENT_BINARY
    args+=("$a")
  fi
  [ "$a" = -- ] && after=1
done
export NODE_NAME=node-1 KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 CNI_NET_DIR=$NODE_ROOT/etc/cni/net.d
exec "${args[@]}" --state-dir "$NODE_ROOT/var/lib/calico-cni-sync/state" --backup-dir "$NODE_ROOT/var/lib/calico-cni-sync/backups" --credential-probe=false
`

// scpShim copies to node-1's host directories under node/.
const scpShim = `#!/bin/bash
set -euo pipefail
n=$#; dest=${!n}; dest=${dest#*:}
mkdir -p "$NODE_ROOT$dest"
cp "${@:1:$((n-1))}" "$NODE_ROOT$dest"
`

// cluster is a control plane, a scratch directory with the shims, and the
// environment the README's commands run in.
type cluster struct {
	cp   *controlplane.ControlPlane
	dir  string
	root string // the repository
	env  []string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cp: controlplane.StartT(t), dir: t.TempDir(), root: root}
	shims := filepath.Join(c.dir, "bin")
	nodeRoot := filepath.Join(c.dir, "node")
	for _, d := range []string{shims, filepath.Join(nodeRoot, "etc", "cni", "net.d"), filepath.Join(c.dir, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"kubectl": execShim, "scp": scpShim} {
		if err := os.WriteFile(filepath.Join(shims, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The README's calico-cni-sync on the reader's PATH: the binary make
	// build writes.
	if err := os.Symlink(filepath.Join(root, "bin", "calico-cni-sync"), filepath.Join(shims, "calico-cni-sync")); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(c.dir, "admin.kubeconfig")
	if err := c.cp.WriteKubeconfig(kubeconfig, c.cp.Config); err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(),
		"PATH="+shims+":"+os.Getenv("PATH"),
		"KUBECONFIG="+kubeconfig,
		"REAL_KUBECTL="+filepath.Join(root, "test", "bin", "kubectl"),
		"AGENT_BINARY="+filepath.Join(root, "bin", "calico-cni-sync"),
		"NODE_ROOT="+nodeRoot,
	)
	return c
}

// run runs README blocks in one shell, from work/, as a reader pastes them
// one after the other.
func (c *cluster) run(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-eu", "-c", script)
	cmd.Dir = filepath.Join(c.dir, "work")
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README commands failed: %v\n%s", err, out)
	}
	t.Logf("README commands:\n%s", out)
	return string(out)
}

// findPod is the start of the repair block, which finds the agent's pod
// (POD) and runs nothing in it: the later blocks use POD as a reader's shell
// still has it.
func findPod(t *testing.T, text string) string {
	t.Helper()
	repair := block(t, text, "repair")
	i := strings.Index(repair, "kubectl -n kube-system exec")
	if i < 0 || !strings.HasPrefix(repair, "POD=") {
		t.Fatalf("the repair block no longer starts by finding POD:\n%s", repair)
	}
	return repair[:i]
}

// buildAgent builds bin/calico-cni-sync as the quick start does.
func buildAgent(t *testing.T, root string) {
	t.Helper()
	cmd := exec.Command("make", "build")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
}

// TestRepair runs "Repair a node" on a v3.32 manifest install: the
// condition, the repair through the agent's pod, the token given by hand,
// and the offline repair.
func TestRepair(t *testing.T) {
	text := readme(t)
	c := newCluster(t)
	buildAgent(t, c.root)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := c.cp.Client
	nodeRoot := filepath.Join(c.dir, "node")
	netDir := filepath.Join(nodeRoot, "etc", "cni", "net.d")

	// Calico as its v3.32 manifest installs it, its CNI hostPath on this
	// node's directory.
	fixture, err := os.ReadFile(filepath.Join(c.root, "test", "testdata", "fixtures", "installs", "manifest-v3.32.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	install := filepath.Join(c.dir, "calico.yaml")
	if err := os.WriteFile(install, []byte(strings.ReplaceAll(string(fixture), "path: /etc/cni/net.d", "path: "+netDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	c.run(t, `"$REAL_KUBECTL" apply --server-side -f `+install+` >/dev/null`)
	// What the root-ca-cert-publisher puts in every namespace.
	if _, err := client.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data:       map[string]string{"ca.crt": string(c.cp.CAData())},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// node-1, with the condition an agent reported, and its agent's pod.
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue,
		Reason: "TokenRejected", Message: "the API server rejected the CNI's token on the node", LastTransitionTime: metav1.Now()}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-cni-sync-x7k2p", Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "calico-cni-sync", Image: "calico-cni-sync"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	out := c.run(t, block(t, text, "condition"))
	if !strings.Contains(out, "TokenRejected") {
		t.Errorf("the condition command does not show the condition:\n%s", out)
	}
	out = c.run(t, block(t, text, "condition")+block(t, text, "repair"))
	for _, want := range []string{"Missing", "exit 1", "now InSync (written)"} {
		if !strings.Contains(out, want) {
			t.Errorf("repair output lacks %q:\n%s", want, out)
		}
	}
	conflist := filepath.Join(netDir, "10-calico.conflist")
	if _, err := os.Stat(conflist); err != nil {
		t.Fatalf("the repair wrote no conflist: %v", err)
	}

	// A token the API server rejects, of another account: the token given
	// by hand replaces it.
	kubeconfigPath := filepath.Join(netDir, "calico-kubeconfig")
	kc, err := os.ReadFile(kubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := os.ReadFile(filepath.Join(c.root, "test", "testdata", "quickstart", "token"))
	if err != nil {
		t.Fatal(err)
	}
	badToken := strings.TrimSpace(string(bad))
	kc = regexp.MustCompile(`(?m)^(\s*token: ).*$`).ReplaceAll(kc, []byte("${1}"+badToken))
	if err := os.WriteFile(kubeconfigPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	out = c.run(t, block(t, text, "condition")+findPod(t, text)+block(t, text, "repair-token"))
	after, err := os.ReadFile(kubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(after), badToken) || !strings.Contains(string(after), "token: ") {
		t.Errorf("the token given by hand did not replace the rejected one:\n%s", out)
	}

	// Offline: the files from scratch, from what was saved.
	for _, f := range []string{"10-calico.conflist", "calico-kubeconfig"} {
		if err := os.Remove(filepath.Join(netDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	out = c.run(t, block(t, text, "condition")+findPod(t, text)+block(t, text, "offline"))
	if !strings.Contains(out, "now InSync (written)") {
		t.Errorf("the offline repair wrote nothing:\n%s", out)
	}
	for _, f := range []string{"calico.yaml", "token", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(nodeRoot, "var", "lib", "calico-cni-sync", f)); err != nil {
			t.Errorf("scp did not bring %s to the node: %v", f, err)
		}
	}
}

// TestUninstall applies the manifests as the README's deploy does, leaves
// what agents leave (a Lease per node, the Node condition), and runs the
// README's uninstall: nothing of the agent's may remain, and the nodes'
// other conditions must.
func TestUninstall(t *testing.T) {
	text := readme(t)
	c := newCluster(t)
	buildAgent(t, c.root) // the uninstall's calico-cni-sync cleanup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := c.cp.Client

	work := filepath.Join(c.dir, "work")
	if out, err := exec.Command("cp", "-r", filepath.Join(c.root, "manifests"), work).CombinedOutput(); err != nil {
		t.Fatalf("copy manifests: %v\n%s", err, out)
	}
	// The image block writes my-cluster/; its apply goes to the cluster.
	c.run(t, block(t, text, "image"))
	if _, err := client.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-cni-sync", metav1.GetOptions{}); err != nil {
		t.Fatalf("the deploy commands left no DaemonSet: %v", err)
	}

	for _, name := range []string{"node-1", "node-2", "node-3"} {
		node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastTransitionTime: now},
			{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionFalse, Reason: "InSync", LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastTransitionTime: now},
		}
		if name == "node-3" { // a node no agent ever reported
			node.Status.Conditions = []corev1.NodeCondition{node.Status.Conditions[0]}
		}
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		holder, secs := name, int32(600)
		if _, err := client.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "calico-cni-sync-" + name, Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Another component's Lease in the same namespace stays.
	if _, err := client.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The RBAC for report, granted and the fix binding taken back.
	c.run(t, block(t, text, "report-rbac"))
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, "calico-cni-sync-report-fix", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the report-rbac commands left the fix binding: %v", err)
	}

	c.run(t, block(t, text, "uninstall"))

	if _, err := client.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-cni-sync", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the DaemonSet is still there: %v", err)
	}
	leases, err := client.CoordinationV1().Leases("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoles().Get(ctx, "calico-cni-sync-report", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the uninstall left report's ClusterRole: %v", err)
	}
	other := false
	for _, l := range leases.Items {
		if strings.HasPrefix(l.Name, "calico-cni-sync-") {
			t.Errorf("Lease %s is still there after the uninstall", l.Name)
		}
		other = other || l.Name == "other"
	}
	if !other {
		t.Errorf("the uninstall deleted another component's Lease")
	}
	for _, name := range []string{"node-1", "node-2", "node-3"} {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, c := range node.Status.Conditions {
			types = append(types, string(c.Type))
		}
		want := "Ready,MemoryPressure"
		if name == "node-3" {
			want = "Ready"
		}
		if strings.Join(types, ",") != want {
			t.Errorf("%s's conditions after the uninstall: %v, want %s", name, types, want)
		}
	}
}
