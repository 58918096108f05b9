package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// TestRender: render prints what --once writes, tokens redacted, and writes
// nothing itself.
func TestRender(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	code, text := n.run("render")
	if code != 0 {
		t.Fatalf("render: exit %d\n%s", code, text)
	}
	for _, name := range []string{"10-calico.conflist", "calico-kubeconfig"} {
		if !strings.Contains(text, "# "+filepath.Join(n.net, name)+"\n") {
			t.Errorf("text lacks the header of %s:\n%s", name, text)
		}
	}
	if !strings.Contains(text, cniconf.RedactedToken(tokenA)) {
		t.Errorf("text does not show the token's hash:\n%s", text)
	}
	code, out := n.run("render", "-o", "json")
	if code != 0 {
		t.Fatalf("render -o json: exit %d\n%s", code, out)
	}
	var doc struct {
		Files []struct{ Path, Content string }
	}
	must(t, json.Unmarshal([]byte(out), &doc))
	if e, _ := os.ReadDir(n.net); len(e) != 0 {
		t.Fatalf("render wrote %d files", len(e))
	}
	n.once()
	if len(doc.Files) != 2 {
		t.Fatalf("render -o json: %d files", len(doc.Files))
	}
	for _, f := range doc.Files {
		written, err := os.ReadFile(f.Path)
		must(t, err)
		if want := cniconf.Redact(string(written), tokenA); f.Content != want {
			t.Errorf("%s: render says\n%s\n--once wrote (redacted)\n%s", f.Path, f.Content, want)
		}
	}
}

func TestRenderShowToken(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	var out, errOut strings.Builder
	code := run([]string{"render", "--show-token", "--configmap-file", n.cm, "--token-file", n.tok, "--ca-file", n.ca,
		"--cni-net-dir", n.net, "--node-name", "node-1"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "token: "+tokenA) {
		t.Fatalf("render --show-token: exit %d, stderr %q; the kubeconfig does not show the token", code, errOut.String())
	}
}
