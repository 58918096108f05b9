package status

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// TestLeaseDueEachTick: ticks come one period apart, and each renewal runs a
// few milliseconds after its tick, by a varying delay. Every tick renews: the
// Lease is never two periods old, when report would call the agent Stale.
func TestLeaseDueEachTick(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	l := &Liveness{Client: fake.NewClientset(), Namespace: "kube-system", Node: "n", Period: 5 * time.Minute,
		Now: func() time.Time { return clock }}
	delays := []time.Duration{9 * time.Millisecond, 2 * time.Millisecond, 7 * time.Millisecond, time.Millisecond}
	for i, d := range delays {
		clock = start.Add(time.Duration(i)*l.Period + d) // the pass of tick i
		if !l.Due() {
			t.Fatalf("tick %d (%v after it): renewal not due, %v after the last", i, d, clock.Sub(l.renewed))
		}
		if err := l.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(l.Period / 2)
		if l.Due() {
			t.Fatalf("due half a period after a renewal")
		}
	}
}
