package cniconf

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestKubeconfigEditsAreKeptLikeConfEdits: every field of the kubeconfig
// counts, layout does not, and a stale token is replaced inside a kept edit.
func TestKubeconfigEditsAreKeptLikeConfEdits(t *testing.T) {
	d := newTestDir(t)
	a := desiredMTU(t, d.NetDir, "1400")
	mustSync(t, d, a)
	k := a.Files[1]
	path := filepath.Join(d.NetDir, k.Name)

	// calico-node's token watcher layout, same meaning: in sync.
	watch, err := os.ReadFile(filepath.Join(fixtureDir(t), "installs", "kubeconfig-token-watch.txt"))
	must(t, err)
	kc, err := ParseKubeconfig(k.Content)
	must(t, err)
	watchFile := strings.NewReplacer("@@SERVER@@", kc.Server, "@@CA_B64@@", base64.StdEncoding.EncodeToString(kc.CAData), "@@TOKEN@@", kc.Token).Replace(string(watch))
	must(t, os.WriteFile(path, []byte(watchFile), 0o600))
	if st := d.Check(a)[1]; st.State != InSync {
		t.Fatalf("token watcher layout: %s %v", st.State, st.ChangedPaths)
	}

	// A hand edit of a field the agent does not render.
	edit := strings.Replace(string(k.Content), "    server:", "    tls-server-name: api.internal\n    server:", 1)
	must(t, os.WriteFile(path, []byte(edit), 0o600))
	st := d.Check(a)[1]
	if st.State != Drifted || !slices.Equal(st.ChangedPaths, []string{"clusters.0.cluster.tls-server-name"}) {
		t.Fatalf("edited kubeconfig: %s %v", st.State, st.ChangedPaths)
	}
	// The token moves on: it is replaced inside the kept edit.
	rotated := desiredMTU(t, d.NetDir, "1400")
	for _, f := range rotated.Files {
		f.Content = []byte(strings.ReplaceAll(string(f.Content), testToken, testToken+"x"))
		f.token += "x"
	}
	mustSync(t, d, rotated)
	got, err := os.ReadFile(path)
	must(t, err)
	if !strings.Contains(string(got), "tls-server-name: api.internal") || !strings.Contains(string(got), testToken+"x") {
		t.Fatalf("kept edit after a rotation:\n%s", got)
	}
}

// TestOddTokenIsQuotedInTheKubeconfig: a token YAML would read otherwise
// is quoted, and reads back unchanged.
func TestOddTokenIsQuotedInTheKubeconfig(t *testing.T) {
	for _, tok := range []string{testToken, "abc #def", "key: value", "- item", "*alias", "0123", "true"} {
		k := Kubeconfig{Server: "https://10.96.0.1:443", CAData: []byte(testCA), Token: tok}
		got, err := ParseKubeconfig(k.Bytes())
		if err != nil || got.Token != tok {
			t.Errorf("token %q read back as %q (%v)", tok, got.Token, err)
		}
	}
	if !strings.Contains(string(Kubeconfig{Token: testToken}.Bytes()), "token: "+testToken+"\n") {
		t.Error("a JWT is not written as install-cni writes it, unquoted")
	}
}

// TestKubeconfigServerFormsAreOne: install-cni's bracketed IPv4 host
// (v3.22-v3.30) and bare IPv6 host (v3.31.4-v3.31.7) mean the same server.
func TestKubeconfigServerFormsAreOne(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://[10.96.0.1]:443", "https://10.96.0.1:443"},
		{"https://10.96.0.1:443", "https://10.96.0.1:443"},
		{"https://fd00::1:443", "https://[fd00::1]:443"},
		{"https://[fd00::1]:443", "https://[fd00::1]:443"},
		{"https://api.example.com:6443/", "https://api.example.com:6443/"},
		{"https://api.example.com", "https://api.example.com"},
	} {
		if got := canonicalServer(tc.in); got != tc.want {
			t.Errorf("canonicalServer(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	d := newTestDir(t)
	a := desiredMTU(t, d.NetDir, "1400")
	mustSync(t, d, a)
	kc := filepath.Join(d.NetDir, DefaultKubeconfigName)
	b := mustRead(t, kc)
	must(t, os.WriteFile(kc, []byte(strings.Replace(string(b), "server: https://10.96.0.1:443", "server: https://[10.96.0.1]:443", 1)), 0o600))
	if st := d.Check(a)[1]; st.State != InSync {
		t.Fatalf("install-cni's bracketed server: %s %v", st.State, st.ChangedPaths)
	}
}

// TestDiffsNameFilesAndHideTheCA: a diff names the file in its headers,
// starts from /dev/null for a missing file, and shows a CA as a digest.
func TestDiffsNameFilesAndHideTheCA(t *testing.T) {
	d := newTestDir(t)
	a := desiredMTU(t, d.NetDir, "1400")
	for _, st := range d.Check(a) {
		if !strings.HasPrefix(st.Diff, "--- /dev/null\n+++ "+st.Path+" (desired)\n") {
			t.Errorf("missing %s: diff starts %q", st.Path, st.Diff[:min(len(st.Diff), 80)])
		}
		if strings.Contains(st.Diff, "LS0t") || strings.Contains(st.Diff, testToken) {
			t.Errorf("%s: the diff shows the CA's base64 or the token:\n%s", st.Path, st.Diff)
		}
	}
	mustSync(t, d, a)
	b := desiredMTU(t, d.NetDir, "1460")
	st := confState(t, d, b)
	if !strings.HasPrefix(st.Diff, "--- "+st.Path+" (on disk)\n+++ "+st.Path+" (desired)\n") || !strings.Contains(st.Diff, "+      \"mtu\": 1460,") {
		t.Errorf("outdated conf diff:\n%s", st.Diff)
	}
	k := d.Check(a)[1]
	if k.Diff != "" {
		t.Errorf("kubeconfig in sync has a diff: %q", k.Diff)
	}
}
