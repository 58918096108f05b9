package sync

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// NetDirGone fails when the CNI directory this process sees was removed
// from under it and cannot come back: a bind mount of the directory itself
// (not of its parent) keeps showing the removed directory, with no link
// left to it, and every file written there is lost to the runtime. Only a
// restart, which mounts the host's directory again, helps.
func (a *Agent) NetDirGone() error {
	fi, err := os.Stat(a.Reconciler.Dir.NetDir)
	if err != nil {
		return nil // gone altogether: the next pass creates it
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return fmt.Errorf("the CNI directory %s was removed on the host, but this container still sees it through a bind mount: restart the agent (mount the directory's parent to avoid this)", a.Reconciler.Dir.NetDir)
	}
	return nil
}

// TokenExpired fails once the token the agent last wrote has expired: the
// source could not renew it, and a restart by the kubelet is the next
// thing to try.
func (a *Agent) TokenExpired() error {
	if exp := a.expiry.Load(); exp != nil && time.Now().After(*exp) {
		return fmt.Errorf("the token on disk expired at %s and was not renewed", exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkToken asks for a new token when the API server rejects the one the
// agent itself wrote (its source's): a TokenRequest token is renewed at once.
// The verdicts come from the reconcile's VerdictCache, asked when a token
// appears on disk and every --token-check-period.
func (a *Agent) checkToken(want *cniconf.Desired, accepted *bool) {
	if a.Reconciler.Verdicts == nil || accepted == nil || *accepted {
		return
	}
	r := a.renewer()
	if r == nil {
		return
	}
	for _, t := range a.Reconciler.Dir.TokensOnDisk(want) {
		if t == want.Token {
			if v := a.Reconciler.Verdicts.Known(t); v != nil && !*v {
				a.Logger.Warn("the API server rejects the agent's own token; requesting a new one")
				r.Invalidate()
				a.trigger("token rejected")
			}
		}
	}
}

// renewer is the token source that renews on a schedule, if any.
func (a *Agent) renewer() renewer {
	src := a.Reconciler.Token
	if auto, ok := src.(AutoToken); ok {
		src = auto.Request
	}
	r, _ := src.(renewer)
	return r
}
