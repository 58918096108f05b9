package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// SandboxSource makes a watch of the node's sandbox failures
// (sandbox.New) that calls onFailure with each new one.
type SandboxSource func(onFailure func(sandbox.Failure)) *sandbox.Source

// soak judges the node's health after it applied a revision rolled out in
// waves: for the soak the pass names (SoakSince to SoakUntil) it watches
// the kubelet's FailedCreatePodSandBox events for the node's pods, and the
// first failure since the revision was applied makes the node put its
// files back. The watch runs only during a soak: at 5000 nodes a watch of
// events on every node is dear (sync/sandbox says what it costs), and a
// rollout in waves has only one wave soaking at a time.
func (a *Agent) soak(ctx context.Context, ro *reconcile.Rollout) {
	if a.cfg.Sandbox == nil || a.reconciler.Rollbacks == nil || ro == nil || ro.SoakUntil.IsZero() || !time.Now().Before(ro.SoakUntil) {
		return
	}
	a.soakMu.Lock()
	defer a.soakMu.Unlock()
	if a.soakRev == ro.Revision {
		return
	}
	if a.soakStop != nil {
		a.soakStop()
	}
	a.soakRev = ro.Revision
	rev := ro.Revision
	// Events carry times to the second: a failure in the second the
	// revision was applied counts.
	since := ro.SoakSince.Truncate(time.Second)
	wctx, stop := context.WithDeadline(ctx, ro.SoakUntil)
	a.soakStop = stop
	judge := func(f sandbox.Failure) {
		if f.At.Before(since) {
			return
		}
		// The plugin's words reach the Lease, an event and the log: a
		// token in them is masked like any other.
		msg := cniconf.Redact(f.Message)
		why := fmt.Sprintf("pod %s failed its sandbox at %s (FailedCreatePodSandBox): %s", f.Pod, f.At.UTC().Format(time.RFC3339), firstLine(msg))
		if a.reconciler.Rollbacks.Unhealthy(rev, why) {
			a.logger.Warn("a pod's sandbox failed on this node after it applied a revision in waves; putting the files back", "revision", rev, "pod", f.Pod, "message", msg)
			a.queue.Trigger("revision unhealthy")
		}
	}
	src := a.cfg.Sandbox(judge)
	var told sync.Once
	src.OnError(func(err error) {
		if apierrors.IsForbidden(err) {
			told.Do(func() {
				a.logger.Error("cannot watch the kubelet's sandbox failures on this node: the rollout's health gate cannot judge the revision it applied; grant the agent list and watch on events", "revision", rev, "err", err)
			})
		}
	})
	a.logger.Info("watching this node's pod sandboxes after applying a revision", "revision", rev, "until", ro.SoakUntil)
	a.soakDone.Go(func() {
		defer stop()
		_ = src.Run(wctx)
	})
	a.soakDone.Go(func() {
		// Failures the first list finds (the agent started again
		// during a soak) count as well as the new ones.
		if cache.WaitForCacheSync(wctx.Done(), src.HasSynced) {
			for _, f := range src.Since(since) {
				judge(f)
			}
		}
	})
}

// firstLine is a kubelet message's first line, bounded: the kubelet's
// messages carry the plugin's whole error.
func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			s = s[:i]
			break
		}
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
