package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// TestCommandsListOnlyTheirFlags: a command's help lists the flags it
// takes, and a flag it would refuse is unknown to it.
func TestCommandsListOnlyTheirFlags(t *testing.T) {
	agentOnly := []string{"--once", "--dry-run", "--accept-env-change"}
	_, rootHelp, _ := runArgs("--help")
	for _, f := range agentOnly {
		if !strings.Contains(rootHelp, f) {
			t.Errorf("calico-cni-sync --help lacks %s", f)
		}
	}
	for _, cmd := range []string{"drift", "render", "report"} {
		_, help, _ := runArgs(cmd, "--help")
		for _, f := range agentOnly {
			if strings.Contains(help, f+" ") || strings.Contains(help, f+"[") {
				t.Errorf("%s --help lists %s, which %s does not take", cmd, f, cmd)
			}
			code, out, errOut := runArgs(cmd, f)
			if code != exitError || out != "" || !strings.Contains(errOut, f) {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit 2 naming the flag", cmd, f, code, out, errOut)
			}
		}
	}
	if _, help, _ := runArgs("report", "--help"); !strings.Contains(help, "--context") {
		t.Error("report --help lacks --context")
	}
}

// TestOnceSaysWhichNodeName: --once with no --node-name and no node
// variable says on stderr which name it used, and where it came from.
func TestOnceSaysWhichNodeName(t *testing.T) {
	t.Setenv("KUBERNETES_NODE_NAME", "")
	t.Setenv("NODE_NAME", "")
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("this test needs a hostname: %v", err)
	}
	n := newNode(t, "calico-config-v3.32.yaml")
	args := []string{"--once", "--configmap-file", n.cm, "--token-file", n.tok, "--ca-file", n.ca, "--cni-net-dir", n.net,
		"--state-dir", filepath.Join(n.dir, "state"), "--backup-dir", n.bak}
	code, _, errOut := runArgs(args...)
	if code != exitOK {
		t.Fatalf("--once: exit %d: %s", code, errOut)
	}
	if want := fmt.Sprintf("node name %q from the hostname", host); !strings.Contains(errOut, want) {
		t.Errorf("--once without a node name: stderr %q, want %q", errOut, want)
	}
	code, _, errOut = runArgs(args...)
	if code != exitOK {
		t.Fatalf("--once again: exit %d: %s", code, errOut)
	}
	if want := fmt.Sprintf("node name %q from the record of the last write", host); !strings.Contains(errOut, want) {
		t.Errorf("--once after a write: stderr %q, want %q", errOut, want)
	}
	code, _, errOut = runArgs(append(args, "--node-name", host)...)
	if code != exitOK || strings.Contains(errOut, "node name") {
		t.Errorf("--once --node-name: exit %d, stderr %q; want 0 and no note", code, errOut)
	}
}

// TestNetDirOnlyLastElementCreated: --once creates a missing --cni-net-dir
// whose parent exists, and refuses, creating nothing, when the parent is
// missing too (a mistyped path).
func TestNetDirOnlyLastElementCreated(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	typo := filepath.Join(n.dir, "etc", "cin", "net.d")
	code, out := n.run("--once", "--cni-net-dir", typo)
	if code != exitError || !strings.Contains(out, "--cni-net-dir "+typo) || !strings.Contains(out, "its parent") {
		t.Errorf("--once with a mistyped --cni-net-dir: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "etc")); !os.IsNotExist(err) {
		t.Errorf("a mistyped --cni-net-dir left %s behind (%v)", filepath.Join(n.dir, "etc"), err)
	}
	fresh := filepath.Join(n.dir, "net2")
	if code, out := n.run("--once", "--cni-net-dir", fresh); code != exitOK {
		t.Fatalf("--once with a missing --cni-net-dir whose parent exists: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(fresh, "10-calico.conflist")); err != nil {
		t.Errorf("the conf was not written into the created directory: %v", err)
	}
}

// emptyCluster answers report's two lists with nothing, as an API server
// with no Node the selector picks would.
func emptyCluster(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/nodes":
			_, _ = w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","metadata":{},"items":[]}`))
		case strings.HasSuffix(r.URL.Path, "/leases"):
			_, _ = w.Write([]byte(`{"kind":"LeaseList","apiVersion":"coordination.k8s.io/v1","metadata":{},"items":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestReportContextAndNoNodes: report takes the kubeconfig context from
// --context, as kubectl does; with no node to judge it says "No nodes
// found" on stderr, prints no table, and exits 1.
func TestReportContextAndNoNodes(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: away
  cluster: {server: "http://127.0.0.1:1"}
- name: empty
  cluster: {server: %q}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: away
  context: {cluster: away, user: u}
- name: empty
  context: {cluster: empty, user: u}
current-context: away
`, emptyCluster(t))), 0o600))

	if code, _, errOut := runArgs("report", "--kubeconfig", kc); code != exitError {
		t.Errorf("report on the current context (no API server): exit %d, stderr %q; want 2", code, errOut)
	}
	code, out, errOut := runArgs("report", "--kubeconfig", kc, "--context", "empty")
	if code != exitOK || out != "" || !strings.Contains(errOut, "No nodes found") {
		t.Errorf("report --context empty: exit %d, stdout %q, stderr %q; want 0, nothing, No nodes found", code, out, errOut)
	}
	code, out, _ = runArgs("report", "--kubeconfig", kc, "--context", "empty", "-o", "json")
	var doc struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	if code != exitOK || json.Unmarshal(bytes.TrimSpace([]byte(out)), &doc) != nil || doc.Nodes == nil || len(doc.Nodes) != 0 {
		t.Errorf("report -o json with no nodes: exit %d, %q; want 0 and {\"nodes\": []}", code, out)
	}
	if code, _, errOut := runArgs("report", "--kubeconfig", kc, "--context", "nope"); code != exitError || !strings.Contains(errOut, "nope") {
		t.Errorf("report --context nope: exit %d, stderr %q; want 2 naming the context", code, errOut)
	}
}

// TestRolloutDefaultsToWaves: an agent given no --rollout stages a
// ConfigMap change in waves (2 % canaries, 4 waves 10 minutes apart), its
// help says so, and so does the flag table of docs/REFERENCE.md;
// --rollout=immediate is still there for whoever asks for it.
func TestRolloutDefaultsToWaves(t *testing.T) {
	parse := func(args ...string) (rollout.Mode, rollout.Plan) {
		t.Helper()
		o := NewOptions()
		fs := pflag.NewFlagSet("calico-cni-sync", pflag.ContinueOnError)
		o.addFlagsFor("", fs)
		must(t, fs.Parse(args))
		mode, plan, err := o.rolloutPlan()
		must(t, err)
		return mode, plan
	}
	mode, plan := parse()
	if mode != rollout.Waves {
		t.Errorf("no --rollout: mode %q, want %q", mode, rollout.Waves)
	}
	if plan.CanarySelector != nil || plan.CanaryPercent != 2 || plan.Waves != 4 || plan.Interval != 10*time.Minute {
		t.Errorf("no wave flags: plan %+v, want 2 %% canaries by hash, 4 waves, 10m", plan)
	}
	if mode, _ := parse("--rollout=immediate"); mode != rollout.Immediate {
		t.Errorf("--rollout=immediate: mode %q", mode)
	}
	_, help, _ := runArgs("--help")
	if !regexp.MustCompile(`--rollout string[^\n]*\(default "waves"\)`).MatchString(help) {
		t.Errorf("calico-cni-sync --help does not give --rollout's default as waves:\n%s", help)
	}
	ref, err := os.ReadFile(filepath.Join("..", "..", "docs", "REFERENCE.md"))
	must(t, err)
	if !strings.Contains(string(ref), "\n| `--rollout` | `waves` |") {
		t.Error("docs/REFERENCE.md's flag table does not give --rollout's default as `waves`")
	}
}
