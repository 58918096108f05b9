package cniconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollbackPointKeepsNoToken: the point saved before a revision holds
// the files as they were, tokens taken out (the kubeconfig's, and a v2.x
// conf's token field); put back, they hold the token of the pass that puts
// them back and mean what they meant.
func TestRollbackPointKeepsNoToken(t *testing.T) {
	for _, c := range []struct {
		name string
		want func(t *testing.T, d *Dir, tok string) *Desired
	}{
		{"v3.32 conflist and kubeconfig", func(t *testing.T, d *Dir, tok string) *Desired {
			w := desiredMTU(t, d.NetDir, "1400", "KUBERNETES_SERVICE_PORT", "6443")
			w.Token = tok
			for _, f := range w.Files {
				f.Content = []byte(strings.ReplaceAll(string(f.Content), f.token, tok))
				f.token = tok
			}
			return w
		}},
		{"v2.x conf with its token", func(t *testing.T, d *Dir, tok string) *Desired {
			in := &Inputs{Template: `{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":1400,"policy":{"k8s_auth_token":"Bearer __SERVICEACCOUNT_TOKEN__"}}]}`,
				NetDir: d.NetDir, Token: tok, FileExists: func(string) bool { return false }}
			w, err := BuildDesired(in, "")
			must(t, err)
			return w
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newTestDir(t)
			old := c.want(t, d, plainOldToken)
			mustSync(t, d, old)
			obs := d.Observe()
			names := make([]string, len(old.Files))
			for i, f := range old.Files {
				names[i] = f.Name
			}
			p, err := obs.RollbackPoint(old, names, "sha256:new", "sha256:old", time.Unix(100, 0))
			must(t, err)
			must(t, SaveRollbackPoint(d.StateDir, p))
			raw, err := os.ReadFile(rollbackPath(d.StateDir, d.NetDir))
			must(t, err)
			if strings.Contains(string(raw), plainOldToken) {
				t.Fatalf("the rollback point holds the token: %s", raw)
			}
			loaded, err := LoadRollbackPoint(d.StateDir, d.NetDir)
			must(t, err)
			if loaded.Revision != "sha256:new" || loaded.Previous != "sha256:old" || len(loaded.Files) != len(old.Files) {
				t.Fatalf("loaded %+v", loaded)
			}
			// Put back by a pass whose token is another: the files
			// mean what they meant, with that token.
			now := c.want(t, d, plainToken)
			back := loaded.Back(now)
			if back.Revision != "sha256:old" {
				t.Errorf("put back at revision %q, want the previous one", back.Revision)
			}
			for i, f := range back.Files {
				was, err := os.ReadFile(filepath.Join(d.NetDir, f.Name))
				must(t, err)
				if want := strings.ReplaceAll(string(was), plainOldToken, plainToken); string(f.Content) != want {
					t.Errorf("%s put back as\n%s\nwant\n%s", f.Name, f.Content, want)
				}
				if f == now.Files[i] {
					t.Errorf("%s is not the point's", f.Name)
				}
			}
		})
	}
	d := newTestDir(t)
	if p, err := LoadRollbackPoint(d.StateDir, d.NetDir); p != nil || err != nil {
		t.Errorf("no point: %+v %v", p, err)
	}
	must(t, os.MkdirAll(recordDir(d.StateDir, d.NetDir), 0o700))
	must(t, os.WriteFile(rollbackPath(d.StateDir, d.NetDir), []byte("{"), 0o600))
	if _, err := LoadRollbackPoint(d.StateDir, d.NetDir); err == nil {
		t.Error("a point that does not decode was read")
	}
}
