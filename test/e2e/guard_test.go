package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestGuardLeavesTokenWatcherAlone is the coexistence as it happens on an
// operator install: calico-node's token watcher rewrites calico-kubeconfig
// with a fresh token for calico-cni-plugin, in its own layout, with a plain
// truncate-and-write, again and again. Every one of those tokens is healthy,
// so under policy guard the agent looks at each rewrite and never writes:
// not one write counted, the file keeps the watcher's bytes and its inode
// (the agent's writes are renames).
func TestGuardLeavesTokenWatcherAlone(t *testing.T) {
	e := newInstallEnv(t, "")
	e.applyInstall("operator-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net), apiServerHere())
	ds := e.daemonSet(e.ns, "calico-node")
	spec := &ds.Spec.Template.Spec
	// calico-node's watcher builds the server from its own env, which the
	// operator sets to the same literals as install-cni's.
	server := "https://" + net.JoinHostPort(installCNIEnv(t, spec, "KUBERNETES_SERVICE_HOST"), installCNIEnv(t, spec, "KUBERNETES_SERVICE_PORT"))
	a := e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitStatus("policy guard", func(r nodeReport) error {
		if r.Token.Policy != "guard" || r.Token.ManagedBy != "calico-node" {
			return errorf("token %+v", r.Token)
		}
		return nil
	})

	path := filepath.Join(e.net, "calico-kubeconfig")
	writes := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig")
	var inode uint64
	// 20 rewrites, and a 21st as a barrier. Each token expires at its own
	// second, and under policy guard the agent's
	// token_expiry_timestamp_seconds is the expiry of the token on disk
	// when a pass ends. Passes run one at a time, so once the metric shows
	// rewrite i+1's token, every pass that could have acted on rewrite i
	// has ended and been counted: the write count checked then covers
	// rewrite i for sure (and rewrite i+1 as far as it got).
	for i := range 21 {
		tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", time.Hour+time.Duration(i)*time.Minute)
		must(t, err)
		exp := expiryOf(t, tok)
		content := tokenWatchKubeconfig(e, server, cp.CAData(), tok)
		must(t, os.WriteFile(path, content, 0o600))
		e.eventually(30*time.Second, fmt.Sprintf("a pass that read rewrite %d", i), func() error {
			if got := a.metric("calico_cni_sync_token_expiry_timestamp_seconds"); got != float64(exp) {
				return errorf("token expiry on disk %v, want %d; calico-kubeconfig writes %v (%v before)",
					got, exp, a.metric("calico_cni_sync_writes_total", "calico-kubeconfig"), writes)
			}
			return nil
		})
		if w := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig"); w != writes {
			t.Fatalf("rewrite %d: the agent wrote calico-kubeconfig (%v writes, %v before)", i, w, writes)
		}
		got, err := os.ReadFile(path)
		must(t, err)
		if !bytes.Equal(got, content) {
			t.Fatalf("rewrite %d: the agent changed calico-node's calico-kubeconfig", i)
		}
		fi, err := os.Stat(path)
		must(t, err)
		if ino := fi.Sys().(*syscall.Stat_t).Ino; i == 0 {
			inode = ino
		} else if ino != inode {
			t.Fatalf("rewrite %d: calico-kubeconfig was replaced (inode %d, was %d)", i, ino, inode)
		}
	}
	if ev := e.eventMessages("TokenRepaired"); len(ev) != 0 {
		t.Fatalf("TokenRepaired raised for healthy tokens: %q", ev)
	}
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	code, rep := e.driftJSON("--calico-daemonset", e.ns+"/calico-node")
	if code != 0 || rep.Token.Accepted == nil || !*rep.Token.Accepted || rep.Token.Subject == nil || *rep.Token.Subject != saSubject(e.ns, "calico-cni-plugin") {
		t.Fatalf("drift after the rewrites: exit %d, token %+v", code, rep.Token)
	}
}

// TestGuardRepairsUnhealthyTokens: under policy guard (a manifest install)
// each kind of unhealthy token calico-node's refresher has been seen to
// leave is replaced with a token the API server accepts, and the node gets a
// TokenRepaired Warning that says why: a token the API server rejects, one
// with less than 10% of its lifetime left, one with less than 5 minutes
// left (both signed by the API server's own key, and accepted by it), and a
// valid token of another account.
func TestGuardRepairsUnhealthyTokens(t *testing.T) {
	e := newInstallEnv(t, "")
	e.applyInstall("manifest-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net))
	e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	want := saSubject(e.ns, "calico-cni-plugin")
	// The manifest sets no KUBERNETES_SERVICE_*: install-cni and
	// calico-node get the kubelet's, which the agent has too.
	server := "https://" + cp.Host()
	real := func() string {
		tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", time.Hour)
		must(t, err)
		return tok
	}
	cases := []struct {
		name     string
		token    func() string
		accepted bool // the API server takes it: the reason is the claims
		why      string
	}{
		{"bound to a deleted Secret", func() string { return e.boundToDeletedSecret("calico-cni-plugin") }, false,
			"rejected by the API server"},
		{"7% of its lifetime left", func() string {
			return reissued(e, real(), time.Now().Add(-23*time.Hour), time.Now().Add(110*time.Minute))
		}, true, "less than 10% of its lifetime left"},
		{"4 minutes left", func() string {
			return reissued(e, real(), time.Now().Add(-56*time.Minute), time.Now().Add(4*time.Minute))
		}, true, "less than 5m0s left"},
		{"another account", func() string {
			tok, err := cp.TokenFor(e.ctx, e.ns, "calico-node", time.Hour)
			must(t, err)
			return tok
		}, true, "for another account (" + saSubject(e.ns, "calico-node")},
	}
	for _, c := range cases {
		bad := c.token()
		if who, err := e.whoIsToken(bad); c.accepted && err != nil {
			t.Fatalf("%s: the API server rejects the test's token (%v): the case would not be about its claims", c.name, err)
		} else if c.accepted && c.name != "another account" && who != want {
			t.Fatalf("%s: the test's token is %q", c.name, who)
		}
		must(t, os.WriteFile(filepath.Join(e.net, "calico-kubeconfig"), tokenWatchKubeconfig(e, server, cp.CAData(), bad), 0o600))
		e.eventually(30*time.Second, c.name+": replaced by a token the API server accepts", func() error {
			who, tok, err := e.whoIsTokenOnDisk()
			switch {
			case tok == bad:
				return errorf("not replaced yet")
			case err != nil:
				return err
			case who != want:
				return errorf("the token on disk is %q", who)
			}
			return nil
		})
		ev := e.waitEvent(e.node, "TokenRepaired", c.why)
		if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "calico-node") {
			t.Errorf("%s: TokenRepaired is %s: %s", c.name, ev.Type, ev.Message)
		}
	}
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
}

// TestGuardKeepsInstallCNIKubeconfigs: when calico-node restarts, its
// install-cni writes calico-kubeconfig itself, with a fresh token for
// calico-cni-plugin, in its own layout: v3.32's (CA unquoted, a trailing
// newline, server by net.JoinHostPort) or v3.22-v3.30's
// (installs/kubeconfig-install-cni-v3.24.txt: no trailing newline, the host
// bracketed even when it is IPv4, https://[10.96.0.1]:443). Both mean what
// the agent would write; under policy guard the agent leaves them alone and
// reports the node InSync.
func TestGuardKeepsInstallCNIKubeconfigs(t *testing.T) {
	host, port, _ := strings.Cut(cp.Host(), ":")
	for _, c := range []struct{ fixture, layout, server string }{
		{"manifest-v3.32.yaml", "kubeconfig-install-cni-v3.32.txt", "https://" + net.JoinHostPort(host, port)},
		{"manifest-v3.26.yaml", "kubeconfig-install-cni-v3.24.txt", "https://[" + host + "]:" + port},
	} {
		t.Run(c.layout, func(t *testing.T) {
			e := newInstallEnv(t, "")
			e.applyInstall(c.fixture, intoNamespace(e.ns), cniHostPath(t, e.net))
			a := e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node")
			e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
			writes := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig")
			layout, err := os.ReadFile(installsPath(c.layout))
			must(t, err)
			// install-cni writes with a token that expires at its own
			// second, and waits for a pass to report it on disk (see
			// TestGuardLeavesTokenWatcherAlone).
			write := func(ttl time.Duration) []byte {
				tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", ttl)
				must(t, err)
				content := []byte(strings.NewReplacer("@@SERVER@@", c.server, "@@CA_B64@@", base64.StdEncoding.EncodeToString(cp.CAData()),
					"@@TOKEN@@", tok).Replace(string(layout)))
				must(t, os.WriteFile(filepath.Join(e.net, "calico-kubeconfig"), content, 0o600))
				exp := expiryOf(t, tok)
				e.eventually(30*time.Second, "a pass that read install-cni's kubeconfig", func() error {
					if got := a.metric("calico_cni_sync_token_expiry_timestamp_seconds"); got != float64(exp) {
						return errorf("token expiry on disk %v, want %d", got, exp)
					}
					return nil
				})
				return content
			}
			write(2 * time.Hour)
			// A second write as the barrier: once a pass has reported it,
			// every pass that could have acted on the first has been
			// counted.
			content := write(3 * time.Hour)
			if w := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig"); w != writes {
				t.Errorf("the agent wrote calico-kubeconfig over install-cni's (%v writes, %v before)", w, writes)
			}
			if got, _ := os.ReadFile(filepath.Join(e.net, "calico-kubeconfig")); !bytes.Equal(got, content) {
				t.Error("calico-kubeconfig is no longer install-cni's")
			}
			if c, err := e.condition(e.node); err != nil || c.Status != corev1.ConditionFalse {
				t.Errorf("condition after install-cni's write: %+v %v", c, err)
			}
		})
	}
}
