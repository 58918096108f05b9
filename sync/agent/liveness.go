package agent

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// NetDirGone fails when the CNI directory this process sees was removed
// from under it and cannot come back: a bind mount of the directory itself
// (not of its parent) keeps showing the removed directory, with no link
// left to it, and every file written there is lost to the runtime. Only a
// restart, which mounts the host's directory again, helps.
func (a *Agent) NetDirGone() error {
	fi, err := os.Stat(a.cfg.NetDir)
	if err != nil {
		return nil // gone altogether: the next pass creates it
	}
	if unlinked(fi) {
		return fmt.Errorf("the CNI directory %s was removed on the host, but this container still sees it through a bind mount: restart the agent (mount the directory's parent to avoid this)", a.cfg.NetDir)
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

// OwnFault is what keeps the agent from doing its job, for /readyz: the last
// pass failed for a reason of its own (a write failed; the API server
// refused its credential or RBAC a read), or the last report was refused.
// A pass that failed for the cluster's inputs is no fault of the agent's:
// it is reported, and the agent stays ready.
func (a *Agent) OwnFault() error {
	var pass error
	if p := a.fault.Load(); p != nil {
		pass = *p
	}
	return errors.Join(pass, a.publisher.Refused())
}
