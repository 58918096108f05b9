package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestBadInputLeavesTheFileAlone(t *testing.T) {
	tests := []struct {
		name    string
		spoil   func(t *testing.T, n *node)
		args    []string
		wantErr string
	}{
		{name: "invalid JSON template", spoil: func(t *testing.T, n *node) { n.editConfigMap(`"cniVersion": "1.0.0",`, `"cniVersion": "1.0.0",,`) }, wantErr: "not a JSON object"},
		{name: "unsupported cniVersion", spoil: func(t *testing.T, n *node) { n.editConfigMap(`"cniVersion": "1.0.0",`, `"cniVersion": "7.0.0",`) }, wantErr: "cniVersion \"7.0.0\" is not supported"},
		{name: "plugin without type", spoil: func(t *testing.T, n *node) { n.editConfigMap(`"type": "portmap",`, `"kind": "portmap",`) }, wantErr: "missing 'type'"},
		{name: "list under a .conf name", spoil: func(t *testing.T, n *node) {}, args: []string{"--cni-conf-name", "10-calico.conf"}, wantErr: "use a .conflist name"},
		{name: "quote in a value", spoil: func(t *testing.T, n *node) { t.Setenv("KUBERNETES_SERVICE_HOST", `10.0.0.1"`) }, wantErr: "KUBERNETES_SERVICE_HOST"},
		{name: "newline in a value", spoil: func(t *testing.T, n *node) { t.Setenv("CNI_MTU", "1500\n9000") }, wantErr: "CNI_MTU"},
		{name: "no template", spoil: func(t *testing.T, n *node) { n.editConfigMap("cni_network_config:", "other_key:") }, wantErr: "no cni_network_config"},
		{name: "empty token file", spoil: func(t *testing.T, n *node) { must(t, os.WriteFile(n.tok, nil, 0o600)) }, wantErr: "--token-file"},
		{name: "token file not UTF-8", spoil: func(t *testing.T, n *node) {
			must(t, os.WriteFile(n.tok, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0\xff\xfe.c2ln"), 0o600))
		}, args: []string{"--token-policy", "own"}, wantErr: "--token-file " + "%TOK%" + " for the calico-kubeconfig's token is not valid UTF-8"},
		{name: "missing ConfigMap file", spoil: func(t *testing.T, n *node) { must(t, os.Remove(n.cm)) }, wantErr: "--configmap-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			n.once()
			before := n.read("10-calico.conflist")
			beforeKC := n.read("calico-kubeconfig")
			tc.spoil(t, n)
			for _, mode := range [][]string{{"--once"}, {"--once", "--on-drift", "enforce"}, {"drift"}} {
				code, out := n.run(append(mode, tc.args...)...)
				if code != 2 {
					t.Errorf("%v: exit %d, want 2\n%s", mode, code, out)
				}
				if want := strings.ReplaceAll(tc.wantErr, "%TOK%", n.tok); !strings.Contains(out, want) {
					t.Errorf("%v: output lacks %q:\n%s", mode, want, out)
				}
			}
			if n.read("10-calico.conflist") != before || n.read("calico-kubeconfig") != beforeKC {
				t.Error("a file on the node changed")
			}
			if n.backups() != 0 {
				t.Error("backups were made")
			}
		})
	}
}

func TestDryRun(t *testing.T) {
	n := newNode(t, "calico-config-v2.6-etcd.yaml")
	code, out := n.run("--once", "--dry-run")
	if code != 1 || !regexp.MustCompile(`\+\+\+ .*desired`).MatchString(out) || !strings.Contains(out, "<token sha256:") {
		t.Fatalf("dry run on an empty node: exit %d\n%s", code, out)
	}
	if e, _ := os.ReadDir(n.net); len(e) != 0 {
		t.Fatalf("dry run wrote %d files", len(e))
	}
	if _, err := os.Stat(filepath.Join(n.dir, "state")); err == nil {
		t.Fatal("dry run wrote a state record")
	}
	n.once()
	if code, out := n.run("--once", "--dry-run"); code != 0 {
		t.Fatalf("dry run on a current node: exit %d\n%s", code, out)
	}
	must(t, os.WriteFile(n.tok, []byte(tokenB), 0o600))
	before := n.read("10-calico.conf")
	if code, out := n.run("--once", "--dry-run"); code != 1 || !strings.Contains(out, "StaleToken") {
		t.Fatalf("dry run with a new token: exit %d\n%s", code, out)
	}
	if n.read("10-calico.conf") != before {
		t.Fatal("dry run changed the file")
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--once", "--on-drift", "fix", "--token-source", "magic"}, []string{"--on-drift \"fix\"", "--token-source \"magic\""}},
		{[]string{"--dry-run"}, []string{"--dry-run needs --once"}},
		{[]string{"--once", "--cni-net-dir", "/etc/cni/net.d", "--backup-dir", "/etc/cni/net.d/bak"}, []string{"must not be inside --cni-net-dir"}},
		{[]string{"--once", "--token-source", "file"}, []string{"needs --token-file"}},
		{[]string{"bogus"}, []string{"unknown command"}},
	}
	for _, tc := range tests {
		var out, errOut strings.Builder
		if code := run(tc.args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut.String(), w) {
				t.Errorf("%v: stderr lacks %q: %s", tc.args, w, errOut.String())
			}
		}
	}
	var out strings.Builder
	if code := run([]string{"version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "calico-cni-sync ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// TestOnceCreatesAMissingDirectory: a node whose CNI directory is gone is
// repaired too.
func TestOnceCreatesAMissingDirectory(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	must(t, os.RemoveAll(n.net))
	if code, out := n.run("--once"); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if n.read("10-calico.conflist") == "" {
		t.Fatal("nothing written")
	}
}

// TestConfigMapFileFormats: the manifest as kubectl prints it, in YAML or
// JSON; another kind is refused by name.
func TestConfigMapFileFormats(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	yamlBytes, err := os.ReadFile(n.cm)
	must(t, err)
	jsonBytes, err := yaml.YAMLToJSON(yamlBytes)
	must(t, err)
	must(t, os.WriteFile(n.cm, jsonBytes, 0o644))
	if code, out := n.run("--once"); code != 0 {
		t.Fatalf("JSON manifest: exit %d\n%s", code, out)
	}
	must(t, os.WriteFile(n.cm, []byte(strings.Replace(string(yamlBytes), "kind: ConfigMap", "kind: Secret", 1)), 0o644))
	if code, out := n.run("drift"); code != 2 || !strings.Contains(out, `kind is "Secret", not ConfigMap`) {
		t.Fatalf("wrong kind: exit %d\n%s", code, out)
	}
}
