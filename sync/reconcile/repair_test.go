package reconcile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// cniAccount is the account the repair tests' files hold tokens for.
const cniAccount = "system:serviceaccount:kube-system:calico-cni-plugin"

// fakeSource is a token source that counts how often it is asked. It gives
// its tokens in turn, one more each time it is told its token is dead
// (Invalidate), and the last again when it has no other; with err set it
// refuses.
type fakeSource struct {
	mu          sync.Mutex
	tokens      []string
	next        int
	err         error
	asked       int
	invalidated int
}

func (s *fakeSource) Token(context.Context, token.Need) (token.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	if s.err != nil {
		return token.Token{}, s.err
	}
	return token.Token{Value: s.tokens[min(s.next, len(s.tokens)-1)], Source: token.SourceTokenRequest}, nil
}

func (s *fakeSource) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated++
	s.next++
}

func (s *fakeSource) counts() (asked, invalidated int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked, s.invalidated
}

// verdicts is an API server that rejects the tokens in its set.
type verdicts struct {
	mu       sync.Mutex
	rejected map[string]bool
}

// reject makes the API server reject tokens. A verdict cache keeps a
// verdict a period: forget starts a new one.
func (v *verdicts) reject(tokens ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range tokens {
		v.rejected[t] = true
	}
}

func (v *verdicts) check(_ context.Context, tok string) *bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	ok := !v.rejected[tok]
	return &ok
}

// repairReconciler is the agent on the v3.32 fixture under policy, with
// the API server's verdicts from v, and a calico-kubeconfig holding onDisk
// written by a first pass from a source that gave it.
func repairReconciler(t *testing.T, policy, onDisk string, v *verdicts) *Reconciler {
	t.Helper()
	mtu := "1400"
	r := testReconciler(t, fixtureInstall(t, &mtu))
	r.CA = func() ([]byte, error) { return []byte(caA), nil }
	r.Policy, r.ServiceAccount, r.CheckTokens = policy, "calico-cni-plugin", true
	forget(r, v)
	r.Token = &fakeSource{tokens: []string{onDisk}}
	if _, _, err := r.Reconcile(context.Background(), ModeSync); err != nil {
		t.Fatal(err)
	}
	if got := kubeconfigToken(t, r); got != onDisk {
		t.Fatal("the first pass did not write the token")
	}
	return r
}

// forget gives r a verdict cache that knows nothing yet, as after a token
// check period.
func forget(r *Reconciler, v *verdicts) {
	r.Verdicts = &token.VerdictCache{Period: time.Hour, Check: v.check}
}

func kubeconfigToken(t *testing.T, r *Reconciler) string {
	t.Helper()
	k, err := cniconf.ParseKubeconfig(readFile(t, filepath.Join(r.Dir.NetDir, cniconf.DefaultKubeconfigName)))
	if err != nil {
		t.Fatal(err)
	}
	return k.Token
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileState is the reported state and message of one file.
func fileState(rep *Report, name string) (cniconf.State, string) {
	for _, f := range rep.Files {
		if filepath.Base(f.Path) == name {
			return f.State, f.Message
		}
	}
	return "", ""
}

// TestGuardAsksTheSourceOnlyToWrite: under policy guard a healthy token on
// disk is current, so a pass asks the source for nothing, even one that
// refuses (the agent's RBAC may not mint a token for calico-node or canal),
// and a file that needs no token (the conf) is still written; the files are
// InSync, not Error.
func TestGuardAsksTheSourceOnlyToWrite(t *testing.T) {
	v := &verdicts{rejected: map[string]bool{}}
	healthy := jwtFor(t, cniAccount, "calico-node's")
	r := repairReconciler(t, token.PolicyGuard, healthy, v)
	src := &fakeSource{err: errors.New(`serviceaccounts "calico-cni-plugin" is forbidden`)}
	r.Token = src
	conf := filepath.Join(r.Dir.NetDir, cniconf.DefaultConfListName)
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{ModeCheck, ModeDryRun, ModeSync} {
		rep, _, err := r.Reconcile(context.Background(), mode)
		if err != nil || rep.RepairRefused != "" {
			t.Fatalf("%s: %v (refused: %q)", modeName(mode), err, rep.RepairRefused)
		}
		if st, msg := fileState(rep, cniconf.DefaultKubeconfigName); st != cniconf.InSync {
			t.Fatalf("%s: calico-kubeconfig is %s: %s", modeName(mode), st, msg)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Fatalf("the conf, which holds no token, was not written: %v", err)
	}
	if asked, _ := src.counts(); asked != 0 {
		t.Fatalf("the source was asked %d times for a node whose token is healthy", asked)
	}
	if kubeconfigToken(t, r) != healthy {
		t.Fatal("the healthy token was replaced")
	}
}

// TestUnreplaceableTokenIsRefusedNotError: a token on disk the API server
// rejects, that nobody can replace, is reported as such under either
// policy, and the pass goes on: the source refuses (a forbidden
// TokenRequest), or the source's token is rejected too. The file keeps its
// token and is StaleToken, with the cause in its message; the report says
// the token is rejected and why the repair was refused; nothing is Error.
func TestUnreplaceableTokenIsRefusedNotError(t *testing.T) {
	forbidden := errors.New(`request a token for service account kube-system/calico-cni-plugin: serviceaccounts "calico-cni-plugin" is forbidden`)
	for _, policy := range []string{token.PolicyGuard, token.PolicyOwn} {
		for _, c := range []struct {
			name  string
			src   func(rejectedToo string) *fakeSource
			cause string
		}{
			{"source refused", func(string) *fakeSource { return &fakeSource{err: forbidden} }, "is forbidden"},
			{"source's token rejected too", func(tok string) *fakeSource { return &fakeSource{tokens: []string{tok}} }, "rejects the tokenrequest token too"},
		} {
			if policy == token.PolicyOwn && c.name != "source refused" {
				continue // under policy own the source's token is written whatever it is
			}
			t.Run(policy+"/"+c.name, func(t *testing.T) {
				v := &verdicts{rejected: map[string]bool{}}
				old := jwtFor(t, cniAccount, "old")
				r := repairReconciler(t, policy, old, v)
				other := jwtFor(t, cniAccount, "other")
				v.reject(old, other)
				forget(r, v)
				r.Token = c.src(other)
				for _, mode := range []Mode{ModeCheck, ModeSync} {
					rep, _, err := r.Reconcile(context.Background(), mode)
					if err != nil {
						t.Fatalf("%s: the pass failed: %v", modeName(mode), err)
					}
					if !strings.Contains(rep.RepairRefused, c.cause) {
						t.Fatalf("%s: refused %q, want the cause %q", modeName(mode), rep.RepairRefused, c.cause)
					}
					if rep.Token.Accepted == nil || *rep.Token.Accepted {
						t.Fatalf("%s: token accepted %v, want rejected", modeName(mode), rep.Token.Accepted)
					}
					st, msg := fileState(rep, cniconf.DefaultKubeconfigName)
					if st != cniconf.StaleToken || !strings.Contains(msg, "rejected by the API server") || !strings.Contains(msg, c.cause) {
						t.Fatalf("%s: calico-kubeconfig is %s: %s", modeName(mode), st, msg)
					}
					if st, msg := fileState(rep, cniconf.DefaultConfListName); st != cniconf.InSync {
						t.Fatalf("%s: the conf is %s: %s", modeName(mode), st, msg)
					}
				}
				if kubeconfigToken(t, r) != old {
					t.Fatal("the kubeconfig's token was rewritten")
				}
			})
		}
	}
}

// TestRepairChecksTheReplacement: a repair after the source was told its
// token is dead checks the token it gets. A source that cannot renew yet (a
// TokenRequest within its floor, a token Secret not yet replaced) gives the
// same rejected token; one may give another the API server rejects too.
// Neither is written over the node's token: the repair is refused, with
// why. A fresh token that works is written.
func TestRepairChecksTheReplacement(t *testing.T) {
	for _, c := range []struct {
		name    string
		tokens  []string // what the source gives, in turn
		reject  []string
		cause   string
		written string
	}{
		{"the same token after Invalidate", []string{"cached", "cached"}, []string{"cached"}, "the source has no other token yet", ""},
		{"another rejected token", []string{"cached", "fresh"}, []string{"cached", "fresh"}, "rejects the tokenrequest token too", ""},
		{"the node's own token", []string{"calico-node's", "calico-node's"}, nil, "is the one the node holds", ""},
		{"a fresh token that works", []string{"cached", "fresh"}, []string{"cached"}, "", "fresh"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := &verdicts{rejected: map[string]bool{}}
			tok := map[string]string{}
			for _, n := range []string{"calico-node's", "cached", "fresh"} {
				tok[n] = jwtFor(t, cniAccount, n)
			}
			r := repairReconciler(t, token.PolicyGuard, tok["calico-node's"], v)
			v.reject(tok["calico-node's"])
			for _, n := range c.reject {
				v.reject(tok[n])
			}
			forget(r, v)
			src := &fakeSource{}
			for _, n := range c.tokens {
				src.tokens = append(src.tokens, tok[n])
			}
			r.Token = src
			rep, pass, err := r.Reconcile(context.Background(), ModeSync)
			if err != nil {
				t.Fatal(err)
			}
			want := tok["calico-node's"]
			if c.written != "" {
				want = tok[c.written]
			}
			if got := kubeconfigToken(t, r); got != want {
				t.Fatalf("the kubeconfig holds %s, want %s", name(tok, got), name(tok, want))
			}
			if c.cause == "" {
				if rep.RepairRefused != "" || rep.Token.Accepted == nil || !*rep.Token.Accepted {
					t.Fatalf("refused %q, accepted %v", rep.RepairRefused, rep.Token.Accepted)
				}
				return
			}
			if !strings.Contains(rep.RepairRefused, c.cause) {
				t.Fatalf("refused %q, want %q", rep.RepairRefused, c.cause)
			}
			for _, o := range pass.Outcomes {
				if o.Action != cniconf.ActionNone {
					t.Fatalf("%s: %s, after a refused repair", o.Now.Path, o.Action)
				}
			}
			if pass.OwnTokenRejected {
				t.Fatal("a refused repair asks the loop to renew the source's token again at once")
			}
		})
	}
}

// name is which of the test's tokens tok is.
func name(tokens map[string]string, tok string) string {
	for n, t := range tokens {
		if t == tok {
			return n
		}
	}
	return "another token"
}
