package reconcile

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// oddFiles are what may sit at a managed path instead of a config: each
// must be described, never opened, followed or read whole.
var oddFiles = []struct {
	name string
	make func(t *testing.T, path, elsewhere string)
}{
	{"FIFO", func(t *testing.T, p, _ string) { mustDo(t, syscall.Mkfifo(p, 0o600)) }},
	{"link to /dev/zero", func(t *testing.T, p, _ string) { mustDo(t, os.Symlink("/dev/zero", p)) }},
	{"50 MB file", func(t *testing.T, p, _ string) {
		f, err := os.Create(p)
		mustDo(t, err)
		mustDo(t, f.Truncate(50<<20))
		mustDo(t, f.Close())
	}},
	{"link to another's file", func(t *testing.T, p, elsewhere string) { mustDo(t, os.Symlink(elsewhere, p)) }},
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// jwtFor is an unsigned JWT for the account, valid for a day.
func jwtFor(t *testing.T, sub, sig string) string {
	t.Helper()
	now := time.Now()
	claims, err := json.Marshal(map[string]any{"sub": sub, "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()})
	mustDo(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(claims) + "." + enc([]byte(sig))
}

// TestOddFilesThroughReconcile: whatever sits at a managed path, a pass in
// every mode and under either token policy ends within 5 s, and never asks
// the API server about a token it did not find in a regular file of its own
// (a link to another's kubeconfig is not followed).
func TestOddFilesThroughReconcile(t *testing.T) {
	const sub = "system:serviceaccount:kube-system:calico-node"
	mine := jwtFor(t, sub, "mine")
	theirs := jwtFor(t, sub, "theirs")
	elsewhere := filepath.Join(t.TempDir(), "their-kubeconfig")
	mustDo(t, os.WriteFile(elsewhere, []byte("apiVersion: v1\nkind: Config\nusers:\n- name: calico\n  user:\n    token: "+theirs+"\n"), 0o600))
	for _, odd := range oddFiles {
		for _, name := range []string{cniconf.DefaultKubeconfigName, cniconf.DefaultConfListName} {
			for _, policy := range []string{token.PolicyOwn, token.PolicyGuard} {
				for _, mode := range []Mode{ModeSync, ModeDryRun, ModeCheck} {
					t.Run(odd.name+"/"+name+"/"+policy+"/"+modeName(mode), func(t *testing.T) {
						mtu := "1400"
						r := testReconciler(t, fixtureInstall(t, &mtu))
						r.CA = func() ([]byte, error) { return []byte(caA), nil }
						r.Policy, r.CheckTokens = policy, true
						r.Token = token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
							return token.Token{Value: mine, Source: token.SourceFile}, nil
						})
						var mu gosync.Mutex
						var asked []string
						r.Verdicts = &token.VerdictCache{Period: time.Hour, Check: func(_ context.Context, tok string) *bool {
							mu.Lock()
							defer mu.Unlock()
							asked = append(asked, tok)
							ok := true
							return &ok
						}}
						mustDo(t, os.MkdirAll(r.Dir.NetDir, 0o755))
						odd.make(t, filepath.Join(r.Dir.NetDir, name), elsewhere)
						done := make(chan *Report, 1)
						go func() {
							rep, _, _ := r.Reconcile(context.Background(), mode)
							done <- rep
						}()
						select {
						case rep := <-done:
							if len(rep.Files) == 0 {
								t.Fatal("no file reported")
							}
						case <-time.After(5 * time.Second):
							t.Fatal("the pass did not end within 5s")
						}
						mu.Lock()
						defer mu.Unlock()
						if slices.Contains(asked, theirs) {
							t.Fatal("the API server was asked about a token read through a link")
						}
					})
				}
			}
		}
	}
}

func modeName(m Mode) string {
	return map[Mode]string{ModeSync: "sync", ModeDryRun: "dry-run", ModeCheck: "check"}[m]
}
