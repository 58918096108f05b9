package agent

import (
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
)

// SandboxProbeEvery is the least time between two probes a sandbox
// failure triggers. A pod whose sandbox fails is retried by the kubelet,
// and each retry that fails is another event (or the same one, updated):
// a node with a dozen such pods sees several a second. The first failure
// probes at once; the ones within this time after it add nothing the probe
// did not already say, and probe again, if they still come, after it. At
// 5000 nodes that bounds the probes of a cluster-wide CNI outage to about
// 170 requests a second, less than the failing plugins' own retries, each
// of which makes the same request.
const SandboxProbeEvery = 30 * time.Second

// SandboxFailed is what the agent does when the kubelet says a pod's
// sandbox could not be created on its node: the CNI credential is probed
// at once, by a pass, rather than at the next token check, at most once
// per SandboxProbeEvery. It is called from the sandbox watch's goroutine.
func (a *Agent) SandboxFailed(f sandbox.Failure) {
	now := time.Now()
	a.sandboxMu.Lock()
	if !a.sandboxProbed.IsZero() && now.Sub(a.sandboxProbed) < SandboxProbeEvery {
		a.sandboxMu.Unlock()
		a.logger.Debug("a pod's sandbox failed on this node; the CNI credential was probed moments ago", "pod", f.Pod, "at", f.At)
		return
	}
	a.sandboxProbed = now
	a.sandboxMu.Unlock()
	a.logger.Info("a pod's sandbox failed on this node; probing the CNI credential now", "pod", f.Pod, "at", f.At, "message", f.Message)
	a.reconciler.ProbeDue()
	a.queue.Trigger("sandbox failure")
}
