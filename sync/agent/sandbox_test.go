package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// TestSandboxFailureProbesAtMostEvery: a sandbox failure makes the token's
// verdict due at once, whatever the check period; failures that follow
// within SandboxProbeEvery do not, and one after it does again. Each one
// that makes it due also triggers a pass.
func TestSandboxFailureProbesAtMostEvery(t *testing.T) {
	probed := 0
	verdicts := &token.VerdictCache{Period: time.Hour, Check: func(context.Context, string) *bool { probed++; v := true; return &v }}
	ctx := context.Background()
	verdicts.Refresh(ctx, []string{"on-disk"}, false)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	q := NewQueue(logger)
	defer q.shutDown()
	a := NewAgent(Config{}, q, &OwnWrites{}, &reconcile.Reconciler{Verdicts: verdicts}, nil, nil, nil, logger)
	failure := sandbox.Failure{Pod: "default/p", At: time.Now(), Message: "connection is unauthorized"}

	refresh := func() int {
		before := probed
		verdicts.Refresh(ctx, []string{"on-disk"}, false)
		return probed - before
	}
	a.SandboxFailed(failure)
	if q.q.Len() != 1 {
		t.Fatal("a sandbox failure triggered no pass")
	}
	q.get()
	q.done()
	if n := refresh(); n != 1 {
		t.Fatalf("the pass after a sandbox failure probed %d times, want 1", n)
	}
	a.SandboxFailed(failure)
	if n := refresh(); n != 0 {
		t.Fatalf("a second failure within %v probed %d times, want 0", SandboxProbeEvery, n)
	}
	a.sandboxMu.Lock()
	a.sandboxProbed = a.sandboxProbed.Add(-SandboxProbeEvery)
	a.sandboxMu.Unlock()
	a.SandboxFailed(failure)
	if n := refresh(); n != 1 {
		t.Fatalf("a failure %v after the last probe probed %d times, want 1", SandboxProbeEvery, n)
	}
}
