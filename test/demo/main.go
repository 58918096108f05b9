// Command demo tells calico-cni-sync's story on a local control plane. First
// the seed's (seed.go): the seed-era calico-config, a token Secret
// regenerated under a new name, a hand edit. Then today's (today.go): a
// tigera operator install discovered from its DaemonSet, calico-node's own
// token refresher left alone while it is healthy, the token it leaves
// behind after a signing-key rotation repaired, and a ConfigMap change
// rolled out in waves (rollout.go) until it is annotated immediate. It
// needs no cluster; `make
// demo` builds what it needs and runs it. It tears everything down when it
// ends or on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
)

func main() { os.Exit(demo()) }

// options are the demo's flags.
type options struct {
	binary, fixture, installFixture, kubectl string
}

func demo() int {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/calico-cni-sync", "the calico-cni-sync binary")
	flag.StringVar(&o.fixture, "fixture", "test/testdata/fixtures/calico-config-v2.6-etcd.yaml", "the seed-era calico-config to apply")
	flag.StringVar(&o.installFixture, "install-fixture", "test/testdata/fixtures/installs/operator-v3.32.yaml", "today's tigera operator install to apply")
	flag.StringVar(&o.kubectl, "kubectl", defaultKubectl(), "kubectl, for kubectl apply --server-side")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		return 1
	}
	fmt.Printf("\nThe demo took %s.\n", time.Since(begin).Round(time.Second))
	return 0
}

// defaultKubectl is the control plane's kubectl, which "make control-plane"
// builds into test/bin (or $CONTROLPLANE_BIN_DIR).
func defaultKubectl() string {
	if dir := os.Getenv("CONTROLPLANE_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "kubectl")
	}
	return filepath.Join("test", "bin", "kubectl")
}

// env is what both stories share: the control plane, a scratch directory
// and an admin kubeconfig for the agent and kubectl.
type env struct {
	o          options
	cp         *controlplane.ControlPlane
	c          kubernetes.Interface
	dir        string
	kubeconfig string
	// agentEnv is the agent's environment: the kubelet would inject the
	// API server's service address; here it is the control plane's loopback.
	agentEnv []string
}

// agentArgs are the flags every agent and drift run of the demo gets: where
// this node's files, state, backups and status go, and no input flag.
func (e *env) agentArgs(node, name string) []string {
	d := filepath.Join(e.dir, name)
	return []string{"--kubeconfig", e.kubeconfig, "--node-name", node, "--cni-net-dir", filepath.Join(d, "etc-cni-net.d"),
		"--state-dir", filepath.Join(d, "state"), "--backup-dir", filepath.Join(d, "backups"),
		"--status-file", filepath.Join(d, "status.json")}
}

// step prints a numbered heading.
var stepN int

func step(format string, args ...any) {
	stepN++
	fmt.Printf("\n\033[1m== %d. %s\033[0m\n", stepN, fmt.Sprintf(format, args...))
}

// chapter prints a story's title.
func chapter(title string) {
	fmt.Printf("\n\033[1m######## %s\033[0m\n", title)
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "calico-cni-sync-demo")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// Each node's directory, as a node has /etc: the agent creates only the
	// last element of --cni-net-dir.
	for _, node := range []string{"seed", "operator"} {
		if err := os.Mkdir(filepath.Join(dir, node), 0o755); err != nil {
			return err
		}
	}

	step("Starting a local control plane: etcd, kube-apiserver, kube-controller-manager (token controller)")
	cp, err := controlplane.Start(ctx, controlplane.Options{Logf: func(f string, a ...any) { fmt.Printf("   "+f+"\n", a...) }})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\n== Tearing down the control plane")
		_ = cp.Stop()
	}()
	fmt.Println("   API server at", cp.Host())
	e := &env{o: o, cp: cp, c: cp.Client, dir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig")}
	if err := cp.WriteKubeconfig(e.kubeconfig, cp.Config); err != nil {
		return err
	}
	host, port, _ := strings.Cut(cp.Host(), ":")
	e.agentEnv = append(os.Environ(), "KUBERNETES_SERVICE_HOST="+host, "KUBERNETES_SERVICE_PORT="+port)

	chapter("The seed's story: Calico v2.6, a calico-config ConfigMap and a legacy token Secret")
	if err := seedStory(ctx, e); err != nil {
		return err
	}
	chapter("Today's story: a tigera operator install, where calico-node refreshes the CNI token itself")
	return todayStory(ctx, e)
}

// waitCondition waits until the node's CalicoCNIConfigDrift condition has
// the reason, and prints it.
func waitCondition(ctx context.Context, c kubernetes.Interface, node, reason string) error {
	var last corev1.NodeCondition
	err := waitFor(ctx, "Node "+node+" condition "+reason, func() bool {
		n, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == "CalicoCNIConfigDrift" {
				last = cond
			}
		}
		return last.Reason == reason
	})
	if err == nil {
		fmt.Printf("   Node %s condition CalicoCNIConfigDrift=%s reason=%s\n   message: %s\n", node, last.Status, last.Reason, last.Message)
	}
	return err
}

// nodeEvents lists the events on a Node, oldest first.
func nodeEvents(ctx context.Context, c kubernetes.Interface, node string) ([]corev1.Event, error) {
	evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + node})
	if err != nil {
		return nil, err
	}
	return evs.Items, nil
}

func printEvents(ctx context.Context, c kubernetes.Interface, node string) {
	evs, err := nodeEvents(ctx, c, node)
	if err != nil {
		return
	}
	fmt.Println("   Events on the Node:")
	for _, e := range evs {
		fmt.Printf("   %-8s %-15s %s\n", e.Type, e.Reason, cniconf.Redact(e.Message))
	}
}

// waitFor polls ok until it holds, for at most a minute.
func waitFor(ctx context.Context, what string, ok func() bool) error {
	return waitWithin(ctx, time.Minute, what, ok)
}

// waitWithin polls ok until it holds, for at most d.
func waitWithin(ctx context.Context, d time.Duration, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func contains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

// show prints a file with its tokens (and anything shaped like one) redacted.
func show(path string, tokens ...string) {
	b, _ := os.ReadFile(path)
	fmt.Printf("   %s (token shown redacted):\n%s", path, indent(cniconf.Redact(string(b), tokens...)+"\n"))
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}
