package cniconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// guardJudge is a token policy that trusts tokens with a "healthy" mark.
func guardJudge(tok string) (bool, string) {
	if strings.Contains(tok, "healthy") {
		return true, ""
	}
	return false, "rejected by the API server"
}

// writeWithToken puts want's files on disk holding tok instead of the
// desired token, as another writer (calico-node) would.
func writeWithToken(t *testing.T, d *Dir, want *Desired, tok string) {
	t.Helper()
	for _, f := range want.Files {
		must(t, os.WriteFile(filepath.Join(d.NetDir, f.Name), f.withTokenForce(tok), 0o600))
	}
}

func (f *File) withTokenForce(tok string) []byte {
	return []byte(strings.ReplaceAll(string(f.Content), f.token, tok))
}

// TestGuardNeverReplacesAHealthyToken: under policy guard a healthy token
// written by someone else is current; a rewrite for another reason keeps
// it; an unhealthy one is replaced, with the reason.
func TestGuardNeverReplacesAHealthyToken(t *testing.T) {
	d := newTestDir(t)
	want := desiredMTU(t, d.NetDir, "1400")
	want.SetTokenJudge(guardJudge)
	mustSync(t, d, want)
	other := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJoZWFsdGh5In0.healthy-signature"
	writeWithToken(t, d, want, other)
	kc := filepath.Join(d.NetDir, DefaultKubeconfigName)
	before, err := os.ReadFile(kc)
	must(t, err)
	for _, st := range mustSync(t, d, want) {
		if st.State != InSync || st.Action != ActionNone {
			t.Fatalf("%s with another healthy token: %s %q", st.Path, st.State, st.Action)
		}
	}
	if after, _ := os.ReadFile(kc); string(after) != string(before) {
		t.Fatal("a healthy token was rewritten")
	}

	// The inputs move on: the conf and kubeconfig are rewritten, keeping
	// the healthy token.
	moved := desiredMTU(t, d.NetDir, "1460", "KUBERNETES_SERVICE_PORT", "6443")
	moved.SetTokenJudge(guardJudge)
	for _, st := range mustSync(t, d, moved) {
		if st.Action != ActionWritten {
			t.Errorf("%s: %q, want written", st.Path, st.Action)
		}
	}
	got, err := ParseKubeconfig(mustRead(t, kc))
	must(t, err)
	if got.Token != other || !strings.HasSuffix(got.Server, ":6443") {
		t.Fatalf("after the inputs moved: server %s, kept the healthy token %v", got.Server, got.Token == other)
	}

	// An unhealthy token is replaced by the source's, and says why.
	writeWithToken(t, d, moved, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.rotten-signature")
	st := moved.Files[1]
	status := mustSync(t, d, moved)[1]
	if status.Action != ActionRotated || !strings.Contains(status.Message, "rejected") {
		t.Fatalf("unhealthy token: %+v", status)
	}
	if got, _ := ParseKubeconfig(mustRead(t, kc)); got.Token != st.token {
		t.Fatal("the unhealthy token was not replaced by the source's")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}
