package cniconf

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// copyDesired is Calico's v3.32 conflist as the agent renders it on a node
// whose CNI directory it mounts at d.NetDir (the conf names the host's
// /etc/cni/net.d, as install-cni writes it).
func copyDesired(t *testing.T, d *Dir, mtu string) *Desired {
	t.Helper()
	data := fixtureData(t, "calico-config-v3.32.yaml")
	data["veth_mtu"] = mtu
	in := goldenInputs(data, clusterEnv)
	in.NetDir, in.KubeconfigDir = d.NetDir, "/etc/cni/net.d"
	want, err := BuildDesired(in, "")
	must(t, err)
	return want
}

// TestIstioOwnedCopyIsNotAForeignConfig: istio-cni with istioOwnedCNIConfig
// writes its own copy of Calico's conflist, Calico's plugins then its own,
// as 02-istio-cni.conflist (testdata/chained/02-istio-cni.conflist, from
// the v3.32 render; its README says where the layout was read). It sorts
// before 10-calico.conflist, so the runtime loads it. A copy that matches
// Calico's file leaves it InSync, saying so; one that lags what the agent
// wrote makes it Shadowed, naming the paths; a config that is no such copy
// shadows it as before. The agent never writes the copy, under either
// policy: no fight with istio-cni's installer.
func TestIstioOwnedCopyIsNotAForeignConfig(t *testing.T) {
	istioCopy := chainedFixture(t, "02-istio-cni.conflist")
	for _, tc := range []struct {
		name     string
		policy   Policy
		file     string
		content  []byte
		mtu      string // the ConfigMap's veth_mtu after the copy was made
		want     State
		says     []string
		wantPath string // the lagging path named
	}{
		{name: "a current copy", policy: PolicyReport, file: "02-istio-cni.conflist", content: istioCopy, mtu: "1400",
			want: InSync, says: []string{"02-istio-cni.conflist, istio-cni's copy of 10-calico.conflist", "the copy matches it"}},
		{name: "the ConfigMap moved: the copy lags", policy: PolicyReport, file: "02-istio-cni.conflist", content: istioCopy, mtu: "1460",
			want: Shadowed, says: []string{"the copy lags it", "restart the istio-cni pod"}, wantPath: "plugins.0.mtu"},
		{name: "the copy lags under enforce too", policy: PolicyEnforce, file: "02-istio-cni.conflist", content: istioCopy, mtu: "1460",
			want: Shadowed, says: []string{"the copy lags it"}, wantPath: "plugins.0.mtu"},
		{name: "a copy under another name", policy: PolicyReport, file: "01-mesh.conflist", content: istioCopy, mtu: "1400",
			want: InSync, says: []string{"01-mesh.conflist, istio-cni's copy"}},
		{name: "a copy edited by hand lags", policy: PolicyReport, file: "02-istio-cni.conflist", mtu: "1400",
			content: bytes.Replace(istioCopy, []byte(`"log_level": "info"`), []byte(`"log_level": "debug"`), 1),
			want:    Shadowed, says: []string{"the copy lags it"}, wantPath: "plugins.0.log_level"},
		{name: "a foreign list", policy: PolicyReport, file: "02-bridge.conflist", content: chainedFixture(t, "05-bridge.conflist"), mtu: "1400",
			want: Shadowed, says: []string{"02-bridge.conflist sorts before 10-calico.conflist"}},
		{name: "istio-cni's copy of another network", policy: PolicyReport, file: "02-istio-cni.conflist", mtu: "1400",
			content: installerInsert(t, chainedFixture(t, "05-bridge.conflist"), chainEntry(t, "istio-cni.plugin.json"), true),
			want:    Shadowed, says: []string{"02-istio-cni.conflist sorts before 10-calico.conflist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			d.Policy = tc.policy
			mustSync(t, d, copyDesired(t, d, "1400"))
			copyPath := filepath.Join(d.NetDir, tc.file)
			must(t, os.WriteFile(copyPath, tc.content, 0o644))
			want := copyDesired(t, d, tc.mtu)
			for pass := 0; pass < 3; pass++ {
				mustSync(t, d, want)
			}
			st := confState(t, d, want)
			if st.State != tc.want {
				t.Fatalf("10-calico.conflist is %s (%s), want %s", st.State, st.Message, tc.want)
			}
			for _, s := range tc.says {
				if !strings.Contains(st.Message, s) {
					t.Errorf("message %q does not say %q", st.Message, s)
				}
			}
			if tc.wantPath != "" && !strings.Contains(st.Message, tc.wantPath) {
				t.Errorf("message %q does not name %s", st.Message, tc.wantPath)
			}
			if got := mustRead(t, copyPath); !bytes.Equal(got, tc.content) {
				t.Fatalf("%s was written:\n%s", tc.file, got)
			}
			if slices.Contains(st.ChangedPaths, tc.wantPath) && tc.wantPath != "" {
				t.Errorf("the copy's lag is in Calico's own changed paths: %v", st.ChangedPaths)
			}
		})
	}
}

// TestIstioOwnedCopyRewrittenOften: a copy its installer keeps rewriting is
// described in one status by its writer's rhythm, counted over the last
// ten minutes of passes, and never answered with a write: the agent's own
// file stays as it wrote it, the copy as its writer left it.
func TestIstioOwnedCopyRewrittenOften(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := newTestDir(t)
	d.Now = func() time.Time { return now }
	d.Rewrites = NewRewrites()
	want := copyDesired(t, d, "1400")
	mustSync(t, d, want)
	own := filepath.Join(d.NetDir, want.Conf().Name)
	ownBefore := mustRead(t, own)
	copyPath := filepath.Join(d.NetDir, "02-istio-cni.conflist")
	istioCopy := chainedFixture(t, "02-istio-cni.conflist")
	must(t, os.WriteFile(copyPath, istioCopy, 0o644))
	mustSync(t, d, want)
	for i := 1; i <= 5; i++ {
		// The installer writes the same meaning in another layout each
		// time (its marshalling, a trailing newline or none).
		content := istioCopy
		if i%2 == 1 {
			content = bytes.TrimSuffix(istioCopy, []byte("\n"))
		}
		now = now.Add(time.Minute)
		must(t, os.WriteFile(copyPath, content, 0o644))
		for _, o := range mustSync(t, d, want) {
			if o.Action != ActionNone {
				t.Fatalf("rewrite %d of the copy answered with %q at %s", i, o.Action, o.Path)
			}
		}
	}
	st := confState(t, d, want)
	if st.State != InSync || !strings.Contains(st.Message, "02-istio-cni.conflist was rewritten 5 times in the last 10 minutes") {
		t.Fatalf("10-calico.conflist: %s %q, want InSync giving the copy's rhythm", st.State, st.Message)
	}
	if got := mustRead(t, own); !bytes.Equal(got, ownBefore) {
		t.Fatal("10-calico.conflist was rewritten")
	}
	now = now.Add(11 * time.Minute)
	if st := confState(t, d, want); strings.Contains(st.Message, "rewritten") {
		t.Fatalf("ten quiet minutes later the rhythm is still given: %q", st.Message)
	}
}
