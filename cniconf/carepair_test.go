package cniconf

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCARepairReplacesOnlyTheCA: a calico-kubeconfig another writer left
// with a CA that does not verify the API server (a rotated cluster CA) is,
// by itself, a difference like any other: Drifted, and kept under policy
// report. Marked for repair (the caller found the file's CA untrusted and
// the desired CA verifying the server), it is StaleToken with the reason,
// and rewritten with the desired CA and the healthy token it holds. A
// hand-edited one gets the CA merged into the edit, every other byte kept.
func TestCARepairReplacesOnlyTheCA(t *testing.T) {
	const why = "the CA on disk does not verify https://10.96.0.1:443"
	other := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJoZWFsdGh5In0.healthy-signature"
	oldCA := []byte("-----BEGIN CERTIFICATE-----\nMIIBold\n-----END CERTIFICATE-----\n")
	build := func(t *testing.T, d *Dir, repair bool) *Desired {
		want := desiredMTU(t, d.NetDir, "1400")
		want.SetTokenJudge(guardJudge)
		if repair {
			want.RepairCA(why)
		}
		return want
	}
	setup := func(t *testing.T, edit func([]byte) []byte) (*Dir, string, []byte) {
		d := newTestDir(t)
		want := build(t, d, false)
		kc := filepath.Join(d.NetDir, DefaultKubeconfigName)
		for _, f := range want.Files {
			content := f.withTokenForce(other)
			if f.Kind == KindKubeconfig {
				k, err := ParseKubeconfig(content)
				must(t, err)
				k.CAData = oldCA
				content = edit(k.Bytes())
			}
			must(t, os.WriteFile(filepath.Join(d.NetDir, f.Name), content, 0o600))
		}
		before, err := os.ReadFile(kc)
		must(t, err)
		return d, kc, before
	}
	kubeconfigOutcome := func(t *testing.T, out []Outcome) Outcome {
		t.Helper()
		for _, o := range out {
			if filepath.Base(o.Path) == DefaultKubeconfigName {
				return o
			}
		}
		t.Fatal("no kubeconfig in the outcomes")
		return Outcome{}
	}
	for _, tc := range []struct {
		name   string
		edit   func([]byte) []byte
		repair bool
		state  State
		action Action
		// kept is a line of the file on disk the pass must keep.
		kept string
	}{
		{name: "not marked", edit: func(b []byte) []byte { return b }, state: Drifted},
		{name: "marked", edit: func(b []byte) []byte { return b }, repair: true, state: StaleToken, action: ActionCARepaired},
		{name: "marked, hand-edited", repair: true, state: Drifted, action: ActionCARepaired, kept: "tls-server-name: api.example",
			edit: func(b []byte) []byte {
				return bytes.Replace(b, []byte("    server:"), []byte("    tls-server-name: api.example\n    server:"), 1)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, kc, before := setup(t, tc.edit)
			want := build(t, d, tc.repair)
			o := kubeconfigOutcome(t, mustSync(t, d, want))
			if o.State != tc.state || o.Action != tc.action {
				t.Fatalf("found %s, did %q; want %s, %q (%+v)", o.State, o.Action, tc.state, tc.action, o)
			}
			after := mustRead(t, kc)
			if tc.action == ActionNone {
				if !bytes.Equal(after, before) {
					t.Fatal("the file changed")
				}
				return
			}
			if !strings.Contains(o.Message, why) || !slices.Contains(o.ChangedPaths, "clusters.0.cluster.certificate-authority-data") {
				t.Fatalf("the outcome does not say why: %+v", o)
			}
			got, err := ParseKubeconfig(after)
			must(t, err)
			wantK, err := ParseKubeconfig(want.Files[1].Content)
			must(t, err)
			if !bytes.Equal(got.CAData, wantK.CAData) || got.Token != other {
				t.Fatalf("after the repair: the desired CA %v, the token on disk kept %v", bytes.Equal(got.CAData, wantK.CAData), got.Token == other)
			}
			if tc.kept != "" && !bytes.Contains(after, []byte(tc.kept)) {
				t.Fatalf("the hand edit %q was lost:\n%s", tc.kept, after)
			}
			// Once repaired, the CA is no longer a difference.
			for _, st := range d.Check(want) {
				if filepath.Base(st.Path) == DefaultKubeconfigName && slices.Contains(st.ChangedPaths, "clusters.0.cluster.certificate-authority-data") {
					t.Fatalf("the CA still differs: %+v", st)
				}
			}
		})
	}
}
