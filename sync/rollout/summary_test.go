package rollout

import (
	"testing"
	"time"
)

func observed(t *testing.T, node string, s State) Observed {
	t.Helper()
	v, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return Observed{Node: node, Lease: true, Fresh: true, Value: v}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	oldRev, newRev := "sha256:00000000000000aa", "sha256:00000000000000bb"
	nodes := []Observed{
		observed(t, "n1", State{Revision: newRev, Phase: Applied, Wave: 0, Since: t0.Add(time.Hour)}),
		observed(t, "n2", State{Revision: newRev, Phase: Waiting, Wave: 2, Since: t0.Add(time.Hour), Reason: "wave 2 opens at 02:10"}),
		observed(t, "n3", State{Revision: newRev, Phase: Halted, Wave: 1, Since: t0.Add(2 * time.Hour), Reason: "node n1: FailedCreatePodSandBox"}),
		observed(t, "n0", State{Revision: newRev, Phase: Waiting, Wave: 1, Since: t0.Add(time.Hour)}),
		observed(t, "n4", State{Revision: oldRev, Phase: Applied, Since: t0}),
		{Node: "n5"},
		{Node: "n6", Lease: true, Fresh: true},
		{Node: "n7", Lease: true, Fresh: true, Value: "{"},
		func() Observed {
			o := observed(t, "n8", State{Revision: newRev, Phase: Applied, Since: t0})
			o.Fresh = false
			return o
		}(),
	}
	s := Summarize(nodes)
	if s.Newest != newRev || len(s.Revisions) != 2 || s.Revisions[0].Revision != newRev || s.Revisions[1].Revision != oldRev {
		t.Fatalf("revisions %+v, newest %s: want %s first, then %s", s.Revisions, s.Newest, newRev, oldRev)
	}
	if got, want := s.Revisions[0].Nodes, (Counts{Applied: 1, Waiting: 2, Halted: 1}); got != want {
		t.Errorf("counts of %s: %+v, want %+v", newRev, got, want)
	}
	if w := s.Revisions[0].Waiting; len(w) != 2 || w[0].Node != "n0" || w[1].Node != "n2" {
		t.Errorf("waiting %+v, want n0 (wave 1) then n2 (wave 2)", w)
	}
	if h := s.Revisions[0].Halted; len(h) != 1 || h[0].Reason != "node n1: FailedCreatePodSandBox" {
		t.Errorf("halted %+v, want n3 with the gate's evidence", h)
	}
	whys := map[string]string{}
	for _, u := range s.NoState {
		whys[u.Node] = u.Why
	}
	if want := map[string]string{"n5": NoLease, "n6": NoAnnotation, "n7": UnreadableAnn, "n8": StaleLease}; len(whys) != len(want) {
		t.Errorf("no state %v, want %v", whys, want)
	} else {
		for n, w := range want {
			if whys[n] != w {
				t.Errorf("no state of %s: %q, want %q", n, whys[n], w)
			}
		}
	}
	if s.Settled() {
		t.Error("Settled with nodes waiting and halted")
	}
}

func TestSettled(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	rev := "sha256:00000000000000aa"
	applied := func(n string) Observed { return observed(t, n, State{Revision: rev, Phase: Applied, Since: t0}) }
	stale := applied("n3")
	stale.Fresh = false
	for _, c := range []struct {
		name  string
		nodes []Observed
		want  bool
	}{
		{"nothing rolls out", []Observed{{Node: "n1"}, {Node: "n2", Lease: true, Fresh: true}}, true},
		{"every node applied the newest", []Observed{applied("n1"), applied("n2")}, true},
		{"a node without a Lease", []Observed{applied("n1"), {Node: "n2"}}, false},
		{"a Stale Lease", []Observed{applied("n1"), stale}, false},
		{"only Stale Leases that published", []Observed{stale}, false},
		{"a node on an older revision", []Observed{applied("n1"), observed(t, "n2", State{Revision: "sha256:00000000000000bb", Phase: Applied, Since: t0.Add(-time.Hour)})}, false},
		{"paused", []Observed{applied("n1"), observed(t, "n2", State{Revision: rev, Phase: Paused, Since: t0})}, false},
	} {
		if got := Summarize(c.nodes).Settled(); got != c.want {
			t.Errorf("%s: Settled %v, want %v", c.name, got, c.want)
		}
	}
}
