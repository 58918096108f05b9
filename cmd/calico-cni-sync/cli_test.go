package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runArgs runs the command with no node around it.
func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// noKubeconfig makes kubectl's loading rules find nothing, whatever the
// machine has in ~/.kube.
func noKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
}

func TestHelpGoesToStdout(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"calico-cni-sync [flags]", "--once --dry-run --node-name node-1",
			"--once --manifest-file calico.yaml --token-file token --ca-file ca.crt --node-name node-1",
			"kubectl -n kube-system create token calico-cni-plugin --duration=24h > token", "namespace calico-system",
			"kubectl -n kube-system get configmap kube-root-ca.crt -o jsonpath='{.data.ca\\.crt}' > ca.crt",
			"Exit codes:", "--once  0 the files are current", "Environment:", "KUBECONFIG", "CNI_MTU", "SKIP_TLS_VERIFY", "drift", "render"}},
		{[]string{"--help"}, []string{"calico-cni-sync [flags]", "Available Commands:"}},
		{[]string{"help"}, []string{"calico-cni-sync [flags]", "Available Commands:"}},
		{[]string{"help", "drift"}, []string{"calico-cni-sync drift [flags]", "drift --node-name node-1", "Exit codes:", "1  any other state", "CNI_NET_DIR"}},
		{[]string{"drift", "-h"}, []string{"calico-cni-sync drift [flags]", "writes nothing"}},
		{[]string{"drift", "--help", "--node-name", "x"}, []string{"calico-cni-sync drift [flags]"}},
		{[]string{"render", "--help"}, []string{"calico-cni-sync render [flags]", "--show-token", `"# <path>"`, "Exit codes:"}},
		{[]string{"help", "report"}, []string{"calico-cni-sync report [flags]", "Stale", "1  any node not", "KUBECONFIG"}},
		{[]string{"help", "report"}, []string{"--rollout", "rollout-state", "--rollout: nothing rolls out"}},
		{[]string{"plan", "--help"}, []string{"calico-cni-sync plan -f FILE [flags]", "-f, --filename", "kubectl diff", "1  some node's files would change", "KUBECONFIG"}},
		{[]string{"version", "--help"}, []string{"VCS revision"}},
		{[]string{"completion", "bash"}, []string{"bash completion"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runArgs(tc.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// The render-only flag is render's alone.
	if _, out, _ := runArgs("drift", "--help"); strings.Contains(out, "--show-token") {
		t.Error("drift's help lists --show-token")
	}
}

// TestUsageErrorsAreOneLine: a mistake on the command line is one line on
// stderr that names it and points at --help, exit 2, nothing on stdout.
func TestUsageErrorsAreOneLine(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--bogus"}, []string{"unknown flag: --bogus"}},
		{[]string{"--verison"}, []string{"--verison", "the version command"}},
		{[]string{"--once", "--dry"}, []string{"--dry", "did you mean --dry-run"}},
		{[]string{"--resync-period", "soon"}, []string{"--resync-period", `"soon"`}},
		{[]string{"--once", "--token-ttl"}, []string{"--token-ttl"}},
		{[]string{"-x"}, []string{"'x'"}},
		{[]string{"bogus"}, []string{`unknown command "bogus"`}},
		{[]string{"dirft"}, []string{`unknown command "dirft"`, "did you mean drift"}},
		{[]string{"drift", "extra"}, []string{`"extra"`, "drift"}},
		{[]string{"help", "bogus"}, []string{`"bogus"`}},
		{[]string{"drift", "--once"}, []string{"--once cannot be used with drift"}},
		{[]string{"--once", "drift"}, []string{"--once cannot be used with drift"}},
		{[]string{"drift", "--dry-run"}, []string{"--dry-run cannot be used with drift"}},
		{[]string{"render", "--once"}, []string{"--once cannot be used with render"}},
		{[]string{"report", "--once"}, []string{"--once cannot be used with report"}},
		{[]string{"drift", "--show-token"}, []string{"--show-token cannot be used with drift", "render"}},
		{[]string{"drift", "--rollout", "waves"}, []string{"--rollout cannot be used with drift"}},
		{[]string{"version", "--node-name", "n"}, []string{"--node-name cannot be used with version"}},
		{[]string{"plan"}, []string{"plan needs -f FILE"}},
		{[]string{"plan", "-f", "x.yaml", "--configmap-file", "y.yaml"}, []string{"--configmap-file cannot be used with plan"}},
		{[]string{"report", "--rollout", "--stuck"}, []string{"--rollout and --stuck are two reports"}},
		{[]string{"drift", "--rollout"}, []string{"--rollout cannot be used with drift", "report"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runArgs(tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout: %q", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--help'") {
				t.Errorf("want one line with a hint to --help, got %q", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %q", w, errOut)
				}
			}
		})
	}
}

// TestMeaninglessCombinations: flags that contradict each other are
// refused, naming both.
func TestMeaninglessCombinations(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--dry-run"}, []string{"--dry-run", "--once"}},
		{[]string{"-o", "json"}, []string{"-o", "--once"}},
		{[]string{"--once", "--token-file", "t", "--token-source", "secret"}, []string{"--token-file", "--token-source=secret"}},
		{[]string{"drift", "--token-file", "t", "--token-source", "tokenrequest"}, []string{"--token-file", "--token-source=tokenrequest"}},
		{[]string{"--once", "--token-secret", "s", "--token-source", "tokenrequest"}, []string{"--token-secret", "--token-source=secret"}},
		{[]string{"--once", "--token-secret", "s", "--token-file", "t"}, []string{"--token-secret", "--token-source=secret", "file"}},
		{[]string{"--accept-env-change"}, []string{"--accept-env-change", "--once"}},
		{[]string{"--probe-on-sandbox-failure", "--credential-probe=false"}, []string{"--probe-on-sandbox-failure", "--credential-probe"}},
		{[]string{"--once", "--probe-on-sandbox-failure", "--credential-probe=true"}, []string{"--probe-on-sandbox-failure", "the agent"}},
		{[]string{"--once", "--configmap", ""}, []string{"--configmap"}},
		{[]string{"--once", "--http-addr", "9645"}, []string{"--http-addr", "HOST:PORT"}},
		{[]string{"--once", "--cni-net-dir", "/tmp/x-net", "--status-file", "/tmp/x-net/status.json"}, []string{"--status-file", "inside --cni-net-dir"}},
		{[]string{"--once", "--token-policy", "trust"}, []string{"--token-policy", "auto, own or guard"}},
		{[]string{"--once", "--source", "etcd"}, []string{"--source", "daemonset or configmap"}},
		{[]string{"--once", "--calico-daemonset", "calico-node"}, []string{"--calico-daemonset", "NAMESPACE/NAME"}},
		// The API server refuses a TokenRequest under 10 minutes, and auto
		// (the default) asks for one as tokenrequest does.
		{[]string{"--once", "--token-ttl", "5m"}, []string{"--token-ttl", "10m", "--token-source=auto"}},
		{[]string{"--once", "--token-ttl", "5m", "--token-source", "tokenrequest"}, []string{"--token-ttl", "10m", "--token-source=tokenrequest"}},
		{[]string{"--rollout", "slowly"}, []string{"--rollout", "immediate, waves"}},
		{[]string{"--rollout-canary-percent", "101"}, []string{"--rollout-canary-percent", "between 0 and 100"}},
		{[]string{"--rollout-waves", "0"}, []string{"--rollout-waves"}},
		{[]string{"--rollout-canary-selector", "a in (b"}, []string{"--rollout-canary-selector"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			noKubeconfig(t)
			code, _, errOut := runArgs(tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %q", w, errOut)
				}
			}
		})
	}
}

// TestErrorsArePrintedOnce: a file in Error and the command's error are one
// message, printed once, in text and in --once's report alike.
func TestErrorsArePrintedOnce(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	n.editConfigMap("cni_network_config:", "other_key:")
	for _, args := range [][]string{{"--once"}, {"--once", "--dry-run"}, {"drift"}, {"render"}} {
		code, out := n.run(args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if c := strings.Count(out, "no cni_network_config"); c != 1 {
			t.Errorf("%v: the error is printed %d times:\n%s", args, c, out)
		}
	}
}

// TestStateDirLinkedIntoTheCNIDirIsRefused: containment follows symlinks.
func TestStateDirLinkedIntoTheCNIDirIsRefused(t *testing.T) {
	noKubeconfig(t)
	dir := t.TempDir()
	net := dir + "/net"
	must(t, os.MkdirAll(net+"/state", 0o755))
	must(t, os.Symlink(net+"/state", dir+"/state-link"))
	code, _, errOut := runArgs("--once", "--cni-net-dir", net, "--state-dir", dir+"/state-link/records")
	if code != 2 || !strings.Contains(errOut, "--state-dir") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}

// TestRepairHelpAgreesWithREADME: the offline repair the help shows is the
// README's "Repair a node": the same commands for the inputs.
func TestRepairHelpAgreesWithREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, help, _ := runArgs("--help")
	for _, line := range []string{
		"kubectl -n kube-system get daemonset/calico-node configmap/calico-config -o yaml > calico.yaml",
		"kubectl -n kube-system create token calico-cni-plugin --duration=24h > token",
		"kubectl -n kube-system get configmap kube-root-ca.crt -o jsonpath='{.data.ca\\.crt}' > ca.crt",
		"--manifest-file",
		"calico-system",
	} {
		if !strings.Contains(help, line) {
			t.Errorf("--help lacks %q", line)
		}
		if !strings.Contains(string(readme), line) {
			t.Errorf("README lacks %q", line)
		}
	}
}
