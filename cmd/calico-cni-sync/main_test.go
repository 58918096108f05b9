package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

const (
	tokenA = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLW5vZGUiLCJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJlQQ"
	tokenC = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06c29tZW9uZS1lbHNlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJlQw"
	tokenB = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLW5vZGUiLCJleHAiOjQxMDI0NDQ4MDF9.c2lnbmF0dXJlQg"
)

// node is a node's directories and the offline inputs of the command.
type node struct {
	// extra flags for every run
	extra                      []string
	t                          *testing.T
	dir, net, cm, tok, ca, bak string
}

func newNode(t *testing.T, fixture string) *node {
	t.Helper()
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	d := t.TempDir()
	n := &node{t: t, dir: d, net: filepath.Join(d, "net"), cm: filepath.Join(d, "cm.yaml"), tok: filepath.Join(d, "token"),
		ca: filepath.Join(d, "ca.crt"), bak: filepath.Join(d, "backups")}
	must(t, os.MkdirAll(n.net, 0o755))
	src, err := os.ReadFile(filepath.Join(fixtures(t), fixture))
	must(t, err)
	must(t, os.WriteFile(n.cm, src, 0o644))
	must(t, os.WriteFile(n.tok, []byte(tokenA+"\n"), 0o600))
	must(t, os.WriteFile(n.ca, selfSignedCA(t), 0o644))
	return n
}

func fixtures(t *testing.T) string {
	p, err := filepath.Abs("../../test/testdata/fixtures")
	must(t, err)
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run runs the command as a user would, offline, and checks no token leaked.
// The node's inputs and directories are added unless args give them.
func (n *node) run(args ...string) (int, string) {
	n.t.Helper()
	var out, errOut bytes.Buffer
	code := run(n.argv(args...), &out, &errOut)
	printed := out.String() + errOut.String()
	for _, tok := range []string{tokenA, tokenB, "c2lnbmF0dXJl"} {
		if strings.Contains(printed, tok) {
			n.t.Fatalf("output of %v shows a token", args)
		}
	}
	return code, printed
}

// argv is args with the node's inputs and directories added where args do
// not give them.
func (n *node) argv(args ...string) []string {
	base := [][2]string{{"--configmap-file", n.cm}, {"--token-file", n.tok}, {"--ca-file", n.ca}, {"--cni-net-dir", n.net},
		{"--state-dir", filepath.Join(n.dir, "state")}, {"--backup-dir", n.bak}, {"--node-name", "node-1"}}
	all := append(append([]string{}, args...), n.extra...)
	for _, b := range base {
		if !slices.Contains(args, b[0]) {
			all = append(all, b[0], b[1])
		}
	}
	return all
}

func (n *node) drift() (int, *reconcile.Report) {
	n.t.Helper()
	code, out := n.run("drift", "-o", "json")
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil {
		n.t.Fatalf("drift -o json: %v\n%s", err, out)
	}
	return code, &rep
}

func (n *node) read(name string) string {
	b, err := os.ReadFile(filepath.Join(n.net, name))
	must(n.t, err)
	return string(b)
}

func (n *node) edit(name, old, new string) {
	n.t.Helper()
	s := n.read(name)
	if !strings.Contains(s, old) {
		n.t.Fatalf("%s lacks %q", name, old)
	}
	must(n.t, os.WriteFile(filepath.Join(n.net, name), []byte(strings.Replace(s, old, new, 1)), 0o600))
}

func (n *node) backups() int {
	e, _ := os.ReadDir(n.bak)
	return len(e)
}

func TestStatesThroughTheCommand(t *testing.T) {
	const conflist = "10-calico.conflist"
	tests := []struct {
		name       string
		fixture    string
		file       string
		setup      func(n *node)
		onceArgs   []string
		wantDrift  string // state drift reports before --once
		wantPaths  []string
		wantOnce   int
		wantAfter  string // state after --once
		wantBackup int
		check      func(t *testing.T, n *node)
	}{
		{name: "missing", fixture: "calico-config-v3.32.yaml", file: conflist, setup: func(n *node) {},
			wantDrift: "Missing", wantOnce: 0, wantAfter: "InSync"},
		{name: "stale token in the kubeconfig (policy own)", fixture: "calico-config-v3.32.yaml", file: "calico-kubeconfig",
			setup: func(n *node) {
				n.extra = []string{"--token-policy", "own"}
				n.once()
				must(t, os.WriteFile(n.tok, []byte(tokenB), 0o600))
			},
			wantDrift: "StaleToken", wantOnce: 0, wantAfter: "InSync",
			check: func(t *testing.T, n *node) {
				if !strings.Contains(n.read("calico-kubeconfig"), tokenB) {
					t.Error("kubeconfig does not hold the new token")
				}
			}},
		{name: "another healthy token is current (policy guard)", fixture: "calico-config-v3.32.yaml", file: "calico-kubeconfig",
			setup:     func(n *node) { n.once(); must(t, os.WriteFile(n.tok, []byte(tokenB), 0o600)) },
			wantDrift: "InSync", wantOnce: 0, wantAfter: "InSync",
			check: func(t *testing.T, n *node) {
				if !strings.Contains(n.read("calico-kubeconfig"), tokenA) {
					t.Error("a healthy token was replaced under policy guard")
				}
			}},
		{name: "a token for another account is replaced (policy guard)", fixture: "calico-config-v3.32.yaml", file: "calico-kubeconfig",
			setup: func(n *node) {
				n.once()
				n.edit("calico-kubeconfig", tokenA, tokenC)
			},
			wantDrift: "StaleToken", wantOnce: 0, wantAfter: "InSync",
			check: func(t *testing.T, n *node) {
				if !strings.Contains(n.read("calico-kubeconfig"), tokenA) {
					t.Error("the other account's token was not replaced")
				}
			}},
		{name: "stale token in a seed-era conf", fixture: "calico-config-v2.6-etcd.yaml", file: "10-calico.conf",
			setup:     func(n *node) { n.once(); must(t, os.WriteFile(n.tok, []byte(tokenB), 0o600)) },
			wantDrift: "StaleToken", wantOnce: 0, wantAfter: "InSync"},
		{name: "outdated after a ConfigMap change", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				n.editConfigMap(`veth_mtu: "0"`, `veth_mtu: "1440"`)
			},
			wantDrift: "Outdated", wantPaths: []string{"plugins.0.mtu"}, wantOnce: 0, wantAfter: "InSync",
			check: func(t *testing.T, n *node) {
				if !strings.Contains(n.read(conflist), `"mtu": 1440,`) {
					t.Error("ConfigMap change not written")
				}
			}},
		{name: "hand edit, report policy keeps it", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup:     func(n *node) { n.once(); n.edit(conflist, `"mtu": 0,`, `"mtu": 1400,`) },
			wantDrift: "Drifted", wantPaths: []string{"plugins.0.mtu"}, wantOnce: 1, wantAfter: "Drifted", wantBackup: 1,
			check: func(t *testing.T, n *node) {
				if !strings.Contains(n.read(conflist), `"mtu": 1400,`) {
					t.Error("hand edit lost")
				}
			}},
		{name: "hand edit and a new token, report policy rotates the token inside it", fixture: "calico-config-v2.6-etcd.yaml", file: "10-calico.conf",
			setup: func(n *node) {
				n.once()
				n.edit("10-calico.conf", `"log_level": "info",`, `"log_level": "debug",`)
				must(t, os.WriteFile(n.tok, []byte(tokenB), 0o600))
			},
			wantDrift: "Drifted", wantPaths: []string{"log_level"}, wantOnce: 1, wantAfter: "Drifted", wantBackup: 1,
			check: func(t *testing.T, n *node) {
				s := n.read("10-calico.conf")
				if !strings.Contains(s, `"log_level": "debug",`) || !strings.Contains(s, tokenB) || strings.Contains(s, tokenA) {
					t.Error("edit not kept or token not rotated inside it")
				}
			}},
		{name: "hand edit, enforce policy backs up and restores", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup:     func(n *node) { n.once(); n.edit(conflist, `"mtu": 0,`, `"mtu": 1400,`) },
			onceArgs:  []string{"--on-drift", "enforce"},
			wantDrift: "Drifted", wantPaths: []string{"plugins.0.mtu"}, wantOnce: 0, wantAfter: "InSync", wantBackup: 1,
			check: func(t *testing.T, n *node) {
				e, _ := os.ReadDir(n.bak)
				b, _ := os.ReadFile(filepath.Join(n.bak, e[0].Name()))
				if !strings.Contains(string(b), `"mtu": 1400,`) {
					t.Error("backup does not hold the edit")
				}
			}},
		{name: "ConfigMap change and a hand edit: the edit is never lost", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				n.edit(conflist, `"log_level": "info",`, `"log_level": "debug",`)
				n.editConfigMap(`veth_mtu: "0"`, `veth_mtu: "1440"`)
			},
			wantDrift: "Drifted", wantPaths: []string{"plugins.0.log_level", "plugins.0.mtu"}, wantOnce: 1, wantAfter: "Drifted", wantBackup: 1},
		{name: "first run, file differs: drifted", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				must(t, os.RemoveAll(filepath.Join(n.dir, "state")))
				n.editConfigMap(`veth_mtu: "0"`, `veth_mtu: "1440"`)
			},
			wantDrift: "Drifted", wantPaths: []string{"plugins.0.mtu"}, wantOnce: 1, wantAfter: "Drifted", wantBackup: 1},
		{name: "white space and key order are no difference", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				n.edit(conflist, `"name": "k8s-pod-network",
  "cniVersion": "1.0.0",`, `"cniVersion":"1.0.0",   "name":"k8s-pod-network",`)
			},
			wantDrift: "InSync", wantOnce: 0, wantAfter: "InSync"},
		{name: "corrupt", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				must(t, os.WriteFile(filepath.Join(n.net, conflist), []byte(`{"name": "k8s-pod`), 0o644))
			},
			wantDrift: "Corrupt", wantOnce: 0, wantAfter: "InSync", wantBackup: 1},
		{name: "shadowed", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				n.once()
				must(t, os.WriteFile(filepath.Join(n.net, "05-other.conflist"), []byte(`{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`), 0o644))
			},
			wantDrift: "Shadowed", wantOnce: 0, wantAfter: "Shadowed"},
		{name: "symlink replaced, not followed", fixture: "calico-config-v3.32.yaml", file: conflist,
			setup: func(n *node) {
				target := filepath.Join(n.dir, "elsewhere.conflist")
				must(t, os.WriteFile(target, []byte("precious"), 0o644))
				must(t, os.Symlink(target, filepath.Join(n.net, conflist)))
			},
			wantDrift: "Corrupt", wantOnce: 0, wantAfter: "InSync", wantBackup: 1,
			check: func(t *testing.T, n *node) {
				if b, _ := os.ReadFile(filepath.Join(n.dir, "elsewhere.conflist")); string(b) != "precious" {
					t.Error("symlink target was written through")
				}
				if fi, _ := os.Lstat(filepath.Join(n.net, conflist)); !fi.Mode().IsRegular() {
					t.Error("symlink not replaced by a file")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.fixture)
			tc.setup(n)
			code, rep := n.drift()
			f := fileIn(t, rep, tc.file)
			if f.State != stateOf(tc.wantDrift) {
				t.Fatalf("drift: %s is %s, want %s (%s)", tc.file, f.State, tc.wantDrift, f.Message)
			}
			wantCode := 1
			if tc.wantDrift == "InSync" {
				wantCode = 0
			}
			if code != wantCode {
				t.Errorf("drift exit %d, want %d", code, wantCode)
			}
			if tc.wantPaths != nil && strings.Join(f.ChangedPaths, ",") != strings.Join(tc.wantPaths, ",") {
				t.Errorf("changedPaths %v, want %v", f.ChangedPaths, tc.wantPaths)
			}
			if f.State != "InSync" && f.State != "Shadowed" && f.Diff == "" {
				t.Error("no diff")
			}
			if code, out := n.run(append([]string{"--once"}, tc.onceArgs...)...); code != tc.wantOnce {
				t.Errorf("--once exit %d, want %d\n%s", code, tc.wantOnce, out)
			}
			if _, rep = n.drift(); fileIn(t, rep, tc.file).State != stateOf(tc.wantAfter) {
				t.Errorf("after --once: %s, want %s", fileIn(t, rep, tc.file).State, tc.wantAfter)
			}
			if got := n.backups(); got != tc.wantBackup {
				t.Errorf("%d backups, want %d", got, tc.wantBackup)
			}
			for _, name := range []string{tc.file, "calico-kubeconfig"} {
				if fi, err := os.Stat(filepath.Join(n.net, name)); err == nil && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
				}
			}
			if tc.check != nil {
				tc.check(t, n)
			}
		})
	}
}

// The agent's GC target is 50 unless GOGC says otherwise.
func TestGCPercent(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	if p, set := gcPercent(none); !set || p != 50 {
		t.Errorf("without GOGC: %d, %t; want 50, true", p, set)
	}
	gogc := func(k string) (string, bool) { return "200", k == "GOGC" }
	if _, set := gcPercent(gogc); set {
		t.Error("GOGC in the environment was overridden")
	}
}
