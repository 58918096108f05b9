package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	cliRuns  = flag.Int("cli-runs", 30, "runs of each command in BenchmarkCommands")
	cliTrace = flag.Bool("cli-trace", false, "BenchmarkCommands: also print one run of each command at -v 5")
)

// BenchmarkCommands: the wall time of the commands a user runs on a node,
// online against the local API server, on Calico's v3.32 manifest install
// (this node's calico-node pod, discovered with no input flag): the built
// binary run as a new process each time, as a user would, beside `kubectl
// get node` run the same way as the yardstick of a one-request command.
func BenchmarkCommands(b *testing.B) {
	e := changeInstalls[0].setup(b)
	kubectlBin := filepath.Join(kubectlDir(), "kubectl")
	// The node is made current first: --once writes both files.
	if code, out := e.runNode(e.nodeArgs("--once")...); code != 0 {
		b.Fatalf("--once: exit %d\n%s", code, out)
	}
	type command struct {
		name string
		argv []string
		code int
	}
	node := func(args ...string) []string { return append([]string{binary}, e.nodeArgs(args...)...) }
	current := []command{
		{"kubectl get node", []string{kubectlBin, "--kubeconfig", e.kubeconfig, "get", "node", e.node}, 0},
		{"drift", node("drift"), 0},
		{"drift --suggest", node("drift", "--suggest"), 0},
		{"render", node("render"), 0},
		{"report", []string{binary, "--kubeconfig", e.kubeconfig, "report"}, 0},
		{"--once", node("--once"), 0},
	}
	b.ResetTimer()
	for _, c := range current {
		timeCommand(b, e, "current node: "+c.name, c.argv, c.code)
	}
	// A hand edit, so that --suggest has something to say.
	path := filepath.Join(e.net, "10-calico.conflist")
	orig := e.read("10-calico.conflist")
	edited := strings.Replace(orig, `"log_level": "info"`, `"log_level": "debug"`, 1)
	if edited == orig {
		b.Fatal("no log_level to edit in the conflist")
	}
	must(b, os.WriteFile(path+".edit", []byte(edited), 0o644))
	must(b, os.Rename(path+".edit", path))
	timeCommand(b, e, "drifted node: drift", node("drift"), 1)
	timeCommand(b, e, "drifted node: drift --suggest", node("drift", "--suggest"), 1)
	// The stale-token story: calico-kubeconfig holds a legacy token of a
	// Secret since deleted, which the API server rejects. drift asks about
	// a legacy token's first rejection again after a second before it
	// believes it.
	b.StopTimer()
	must(b, os.WriteFile(path, []byte(orig), 0o644))
	server, ca, _, err := e.kubeconfigOnDisk()
	must(b, err)
	secret := e.populatedTokenSecret(fmt.Sprintf("calico-node-token-bench%d", seq.Add(1)))
	stale := e.secretToken(secret)
	must(b, e.client.CoreV1().Secrets(e.ns).Delete(e.ctx, secret, metav1.DeleteOptions{}))
	e.eventually(60*time.Second, "the deleted Secret's token rejected", func() error {
		if _, err := e.whoIsToken(stale); !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("not rejected yet (%v)", err)
		}
		return nil
	})
	must(b, os.WriteFile(filepath.Join(e.net, "calico-kubeconfig"), tokenWatchKubeconfig(e, server, ca, stale), 0o600))
	b.StartTimer()
	timeCommand(b, e, "rejected legacy token: drift", node("drift"), anyFailure)
	b.StopTimer()
	if *cliTrace {
		for _, c := range [][]string{node("drift", "--suggest", "-v", "5"), node("drift", "-v", "5")} {
			out, _ := runTimed(b, e, c)
			fmt.Printf("--- trace of %s\n%s\n", strings.Join(c[len(c)-4:], " "), out)
		}
	}
}

// anyFailure: a command is expected to exit with some code other than 0.
const anyFailure = -1

// timeCommand runs argv cliRuns times and reports its wall time.
func timeCommand(b *testing.B, e *env, name string, argv []string, wantCode int) {
	var samples []time.Duration
	for range *cliRuns {
		start := time.Now()
		out, code := runTimed(b, e, argv)
		samples = append(samples, time.Since(start))
		if code != wantCode && (wantCode != anyFailure || code == 0) {
			b.Fatalf("%s: exit %d, want %d\n%s", name, code, wantCode, out)
		}
	}
	b.ReportMetric(quantile(samples, 0.5), strings.NewReplacer(" ", "_", ":", "").Replace(name)+"-p50-ms")
	fmt.Printf("command %-32s n=%d p50=%7.1fms p99=%7.1fms\n", name, len(samples), quantile(samples, 0.5), quantile(samples, 0.99))
}

// runTimed runs a command to completion with the node's environment, its
// output kept (and checked for tokens) outside the caller's timing.
func runTimed(b *testing.B, e *env, argv []string) (string, int) {
	cmd := exec.CommandContext(e.ctx, argv[0], argv[1:]...)
	cmd.Env = e.nodeEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.Fatal(err)
	}
	if strings.Contains(out.String(), "eyJhbGciOi") {
		b.Fatalf("%s printed a JWT", argv[0])
	}
	return out.String(), code
}

// kubectlDir is where the control plane's kubectl is (test/bin).
func kubectlDir() string {
	if dir := os.Getenv("CONTROLPLANE_BIN_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "bin")
}
