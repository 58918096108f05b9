package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

// TestFileNamesStayInTheCNIDirectory: the conf and kubeconfig names are
// plain file names, and the kubeconfig's is not a CNI config's; nothing is
// written when one is not.
func TestFileNamesStayInTheCNIDirectory(t *testing.T) {
	tests := []struct{ flag, name string }{
		{"--cni-kubeconfig-name", "../escape-kubeconfig"},
		{"--cni-kubeconfig-name", "sub/calico-kubeconfig"},
		{"--cni-kubeconfig-name", ".."},
		{"--cni-kubeconfig-name", "."},
		{"--cni-kubeconfig-name", ".calico-kubeconfig"},
		{"--cni-kubeconfig-name", ""},
		// A kubeconfig the runtime would load as a network config, the
		// first of the directory: Calico's would be shadowed.
		{"--cni-kubeconfig-name", "00-kc.conf"},
		{"--cni-kubeconfig-name", "00-kc.conflist"},
		{"--cni-kubeconfig-name", "00-kc.json"},
		{"--cni-conf-name", "../10-calico.conflist"},
		{"--cni-conf-name", "/etc/cni/net.d/10-calico.conflist"},
		{"--cni-conf-name", ".10-calico.conflist"},
		{"--cni-conf-name", ".."},
	}
	for _, tc := range tests {
		t.Run(tc.flag+"="+tc.name, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			for _, mode := range [][]string{{"--once"}, {"drift"}, {"render"}} {
				code, out := n.run(append(mode, tc.flag, tc.name)...)
				if code != 2 || !strings.Contains(out, tc.flag) {
					t.Errorf("%v: exit %d, want 2 naming %s:\n%s", mode, code, tc.flag, out)
				}
			}
			if e, _ := os.ReadDir(n.net); len(e) != 0 {
				t.Errorf("%d files written in the CNI directory", len(e))
			}
			if _, err := os.Stat(filepath.Join(n.dir, "escape-kubeconfig")); err == nil {
				t.Error("a kubeconfig was written outside the CNI directory")
			}
		})
	}
	n := newNode(t, "calico-config-v3.32.yaml")
	if code, out := n.run("--once", "--cni-kubeconfig-name", "my-kubeconfig", "--cni-conf-name", "10-calico.conflist"); code != 0 {
		t.Fatalf("plain names: exit %d\n%s", code, out)
	}
	n.read("my-kubeconfig")
}

// TestRelativeDirectoriesAreMadeAbsolute: the kubeconfig path written into
// the conf is read by the CNI plugin, from the runtime's working directory.
func TestRelativeDirectoriesAreMadeAbsolute(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	t.Chdir(n.dir)
	must(t, os.Mkdir("rel", 0o755)) // --cni-net-dir's parent must exist
	code, out := n.run("--once", "--cni-net-dir", "rel/net", "--state-dir", "rel/state", "--backup-dir", "rel/backups")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(n.dir, "rel", "net", "10-calico.conflist"))
	must(t, err)
	var conf struct {
		Plugins []struct {
			Kubernetes struct {
				Kubeconfig string `json:"kubeconfig"`
			} `json:"kubernetes"`
		} `json:"plugins"`
	}
	must(t, json.Unmarshal(b, &conf))
	want := filepath.Join(n.dir, "rel", "net", "calico-kubeconfig")
	if got := conf.Plugins[0].Kubernetes.Kubeconfig; got != want {
		t.Errorf("kubeconfig path in the conf is %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "rel", "state")); err != nil {
		t.Errorf("state record not under rel/state: %v", err)
	}
}

// TestCAFileMustBePEM: a CA that is not a PEM certificate (the token in its
// place, a key, a damaged certificate) is refused before anything is
// written, and the file is never quoted.
func TestCAFileMustBePEM(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"the token", tokenA + "\n", "must be a PEM certificate"},
		{"empty", "", "must be a PEM certificate"},
		{"a key", "-----BEGIN PRIVATE KEY-----\nMIIBtest\n-----END PRIVATE KEY-----\n", `PEM "PRIVATE KEY" block`},
		{"a certificate block that is not base64", "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n", "must be a PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			must(t, os.WriteFile(n.ca, []byte(tc.content), 0o600))
			for _, mode := range [][]string{{"--once"}, {"drift"}, {"render"}} {
				code, out := n.run(mode...)
				if code != 2 || !strings.Contains(out, "--ca-file") || !strings.Contains(out, tc.want) {
					t.Errorf("%v: exit %d, want 2 naming --ca-file and %q:\n%s", mode, code, tc.want, out)
				}
			}
			if e, _ := os.ReadDir(n.net); len(e) != 0 {
				t.Errorf("%d files written", len(e))
			}
		})
	}
}

// TestUnwritableDirectoriesAreNamed: --once stops before its first write
// when it could not keep its record or backups, naming the flag to change.
func TestUnwritableDirectoriesAreNamed(t *testing.T) {
	for _, flag := range []string{"--state-dir", "--backup-dir"} {
		t.Run(flag, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			blocker := filepath.Join(n.dir, "blocker")
			must(t, os.WriteFile(blocker, nil, 0o600))
			code, out := n.run("--once", flag, filepath.Join(blocker, "dir"))
			if code != 2 || !strings.Contains(out, flag) || !strings.Contains(out, "not a directory") {
				t.Errorf("exit %d, want 2 naming %s:\n%s", code, flag, out)
			}
			if e, _ := os.ReadDir(n.net); len(e) != 0 {
				t.Errorf("%d files written", len(e))
			}
		})
	}
}

// TestOnceJSON: --once -o json prints the document drift -o json prints.
func TestOnceJSON(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	code, out := n.run("--once", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a report: %v\n%s", err, out)
	}
	if rep.Node != "node-1" || len(rep.Files) != 2 || fileIn(t, &rep, "10-calico.conflist").State != "InSync" {
		t.Errorf("report: %+v", rep)
	}
	_, drift := n.drift()
	if len(drift.Files) != len(rep.Files) || drift.Token.Source != rep.Token.Source {
		t.Errorf("--once -o json %+v differs from drift -o json %+v", rep, drift)
	}
}
