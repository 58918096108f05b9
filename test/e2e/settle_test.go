package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestAFileThatKeepsChangingIsStillReported: a corrupt file rewritten more
// often than the settle time never settles; the agent waits for it a while
// (a truncate-then-write must not show as Corrupt), then reports the node as
// it stands rather than leave it unreported for as long as the writer runs.
func TestAFileThatKeepsChangingIsStillReported(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			_ = os.WriteFile(filepath.Join(e.net, "10-calico.conflist"), []byte(`{"name": "k8s-pod`), 0o600)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	defer func() { stop(); <-done }()
	e.waitCondition(e.node, corev1.ConditionTrue, "Corrupt")
}
