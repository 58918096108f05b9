// Command demo tells calico-cni-sync's story on a local control plane: the
// seed-era calico-config, a token Secret regenerated under a new name, a
// hand edit. It needs no cluster; `make demo` builds what it needs and runs
// it. It tears everything down when it ends or on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
)

const ns, node = "kube-system", "demo-node"

func main() { os.Exit(demo()) }

func demo() int {
	binary := flag.String("binary", "bin/calico-cni-sync", "the calico-cni-sync binary")
	fixture := flag.String("fixture", "test/testdata/fixtures/calico-config-v2.6-etcd.yaml", "the calico-config to apply")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *binary, *fixture); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		return 1
	}
	return 0
}

// step prints a numbered heading.
var stepN int

func step(format string, args ...any) {
	stepN++
	fmt.Printf("\n\033[1m== %d. %s\033[0m\n", stepN, fmt.Sprintf(format, args...))
}

func run(ctx context.Context, binary, fixture string) error {
	dir, err := os.MkdirTemp("", "calico-cni-sync-demo")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	netDir := filepath.Join(dir, "etc-cni-net.d")

	step("Starting a local control plane: etcd, kube-apiserver, kube-controller-manager (token controller)")
	cp, err := controlplane.Start(ctx, controlplane.Options{Logf: func(f string, a ...any) { fmt.Printf("   "+f+"\n", a...) }})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\n== Tearing down the control plane")
		_ = cp.Stop()
	}()
	c := cp.Client
	fmt.Println("   API server at", cp.Host())

	step("Applying the seed-era calico-config (%s): a single-plugin 10-calico.conf with the token inside", filepath.Base(fixture))
	raw, err := os.ReadFile(fixture)
	if err != nil {
		return err
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return err
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	first, err := newTokenSecret(ctx, c, "calico-node-token-x7k2p")
	if err != nil {
		return err
	}
	fmt.Println("   ServiceAccount calico-node, token Secret calico-node-token-x7k2p populated by the token controller:", cniconf.RedactedToken(first))

	step("Starting the calico-cni-sync agent for %s, with %s standing in for /etc/cni/net.d", node, netDir)
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.Config); err != nil {
		return err
	}
	host, port, _ := strings.Cut(cp.Host(), ":")
	common := []string{"--kubeconfig", kubeconfig, "--node-name", node, "--cni-net-dir", netDir,
		"--state-dir", filepath.Join(dir, "state"), "--backup-dir", filepath.Join(dir, "backups"),
		"--status-file", filepath.Join(dir, "status.json")}
	agent := exec.Command(binary, append(common, "--http-addr", "127.0.0.1:0")...)
	agent.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST="+host, "KUBERNETES_SERVICE_PORT="+port)
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		fmt.Println("\n== The agent stopped on SIGTERM; its log:", "(last lines)")
		b, _ := os.ReadFile(logf.Name())
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, l := range lines[max(0, len(lines)-8):] {
			fmt.Println("   " + l)
		}
	}()
	conf := filepath.Join(netDir, "10-calico.conf")
	if err := waitFor(ctx, "the agent writes 10-calico.conf", func() bool { return contains(conf, first) }); err != nil {
		return err
	}
	show(conf, first)
	if err := waitCondition(ctx, c, "InSync"); err != nil {
		return err
	}

	step("The token Secret is deleted and regenerated under a NEW name (the failure that strands nodes)")
	if err := c.CoreV1().Secrets(ns).Delete(ctx, "calico-node-token-x7k2p", metav1.DeleteOptions{}); err != nil {
		return err
	}
	second, err := newTokenSecret(ctx, c, "calico-node-token-9fq4m")
	if err != nil {
		return err
	}
	fmt.Println("   new Secret calico-node-token-9fq4m:", cniconf.RedactedToken(second))
	start := time.Now()
	if err := waitFor(ctx, "the new token in 10-calico.conf", func() bool { return contains(conf, second) }); err != nil {
		return err
	}
	if d := time.Since(start); d < time.Millisecond {
		fmt.Printf("   10-calico.conf already holds %s: the agent wrote it before the demo could look; no restart\n", cniconf.RedactedToken(second))
	} else {
		fmt.Printf("   10-calico.conf now holds %s, %s after the demo saw the Secret populated; no restart\n", cniconf.RedactedToken(second), d.Round(time.Millisecond))
	}

	step("Someone edits 10-calico.conf by hand on the node (mtu 1500 -> 1400)")
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	if err := os.WriteFile(conf+".edit", []byte(strings.Replace(string(b), `"mtu": 1500`, `"mtu": 1400`, 1)), 0o600); err != nil {
		return err
	}
	if err := os.Rename(conf+".edit", conf); err != nil {
		return err
	}
	if err := waitCondition(ctx, c, "Drifted"); err != nil {
		return err
	}
	printEvents(ctx, c)

	step("calico-cni-sync drift on the node (exit 1: not InSync)")
	drift := exec.CommandContext(ctx, binary, append(common, "drift")...)
	drift.Env = agent.Env
	out, _ := drift.CombinedOutput()
	fmt.Print(indent(string(out)))

	step("calico-cni-sync report: every node's state, from the Node conditions")
	report := exec.CommandContext(ctx, binary, "report", "--kubeconfig", kubeconfig)
	out, _ = report.CombinedOutput()
	fmt.Print(indent(string(out)))
	fmt.Println("\nThe edit is kept (--on-drift=report) and the cluster knows about it before a restart throws it away.")
	return nil
}

func newTokenSecret(ctx context.Context, c kubernetes.Interface, name string) (string, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
		Type: corev1.SecretTypeServiceAccountToken}
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var token string
	err := waitFor(ctx, "the token controller populates "+name, func() bool {
		got, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		token = string(got.Data["token"])
		return err == nil && token != ""
	})
	return token, err
}

func waitCondition(ctx context.Context, c kubernetes.Interface, reason string) error {
	var last corev1.NodeCondition
	err := waitFor(ctx, "Node condition "+reason, func() bool {
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

func printEvents(ctx context.Context, c kubernetes.Interface) {
	evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + node})
	if err != nil {
		return
	}
	fmt.Println("   Events on the Node:")
	for _, e := range evs.Items {
		fmt.Printf("   %-8s %-15s %s\n", e.Type, e.Reason, e.Message)
	}
}

func waitFor(ctx context.Context, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
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

func show(path, token string) {
	b, _ := os.ReadFile(path)
	var pretty map[string]any
	_ = json.Unmarshal(b, &pretty)
	fmt.Printf("   %s (token shown redacted):\n%s", path, indent(cniconf.Redact(string(b), token)+"\n"))
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}
