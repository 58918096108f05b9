package status

import (
	"context"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// TestLeaseFreshByItsOwnDuration: a Lease is judged by the duration its
// agent gave it (twice the agent's resync period), not by the reader's
// period; only a Lease without a duration falls back to the reader's.
func TestLeaseFreshByItsOwnDuration(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lease := func(renewedAgo time.Duration, secs *int32) *coordinationv1.Lease {
		renew := metav1.NewMicroTime(now.Add(-renewedAgo))
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &renew, LeaseDurationSeconds: secs}}
	}
	s := func(v int32) *int32 { return &v }
	cases := []struct {
		name  string
		lease *coordinationv1.Lease
		want  bool
	}{
		{"15m agent, renewed 20m ago", lease(20*time.Minute, s(1800)), true},
		{"15m agent, renewed 31m ago", lease(31*time.Minute, s(1800)), false},
		{"1m agent, renewed 3m ago", lease(3*time.Minute, s(120)), false},
		{"no duration, within twice the reader's period", lease(9*time.Minute, nil), true},
		{"no duration, past twice the reader's period", lease(11*time.Minute, nil), false},
		{"never renewed", &coordinationv1.Lease{}, false},
		{"missing", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := LeaseFresh(tc.lease, 5*time.Minute, now); got != tc.want {
				t.Fatalf("LeaseFresh = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRenewSetsTheDuration: the agent writes twice its period as the
// Lease's duration, which report judges it by.
func TestRenewSetsTheDuration(t *testing.T) {
	client := fake.NewClientset()
	l := &Liveness{Client: client, Namespace: "agents", Node: "n", Period: 15 * time.Minute}
	if err := l.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoordinationV1().Leases("agents").Get(context.Background(), LeasePrefix+"n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Spec.LeaseDurationSeconds; d == nil || *d != 1800 {
		t.Fatalf("leaseDurationSeconds %v, want 1800", d)
	}
}

// TestOnlyARollbackLabelsTheLease: the Lease of a node that rolled a
// revision back carries rollout.ClosedLabel, which the other nodes' gates
// select on; any other state carries none, and the label goes when the
// state moves on.
func TestOnlyARollbackLabelsTheLease(t *testing.T) {
	client := fake.NewClientset()
	l := &Liveness{Client: client, Namespace: "agents", Node: "n", Period: 15 * time.Minute}
	rev := "sha256:0123456789abcdef"
	for _, c := range []struct {
		phase rollout.Phase
		label string
	}{
		{rollout.Applied, ""},
		{rollout.RolledBack, "0123456789abcdef"},
		{rollout.Halted, ""},
		{rollout.Waiting, ""},
	} {
		l.SetRollout(rollout.State{Revision: rev, Phase: c.phase})
		if !l.Due() {
			t.Fatalf("%s: a new state is not due", c.phase)
		}
		if err := l.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := client.CoordinationV1().Leases("agents").Get(context.Background(), LeasePrefix+"n", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := got.Labels[rollout.ClosedLabel]; v != c.label || ok != (c.label != "") {
			t.Errorf("%s: label %q (present %v), want %q", c.phase, v, ok, c.label)
		}
	}
}
