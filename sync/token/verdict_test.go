package token

import (
	"context"
	"testing"
	"time"
)

// TestUnknownVerdictKeepsTheKnownOne: a check the API server does not answer
// (a 503) keeps the last verdict for the same token, and the token is asked
// again sooner than the period.
func TestUnknownVerdictKeepsTheKnownOne(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	answer := ptr(false)
	asked := 0
	c := &VerdictCache{Period: 10 * time.Minute, Now: func() time.Time { return clock },
		Check: func(context.Context, string) *bool { asked++; return answer }}
	ctx := context.Background()
	c.Refresh(ctx, []string{"tok"}, false)
	if v := c.Known("tok"); v == nil || *v {
		t.Fatalf("verdict %v, want rejected", v)
	}
	answer = nil // the API server is unavailable
	clock = clock.Add(11 * time.Minute)
	c.Refresh(ctx, []string{"tok"}, false)
	if v := c.Known("tok"); v == nil || *v {
		t.Fatalf("an unanswered check erased the known verdict: %v", v)
	}
	before := asked
	clock = clock.Add(retryUnknown)
	c.Refresh(ctx, []string{"tok"}, false)
	if asked != before+1 {
		t.Fatalf("an unanswered token was not asked again after %v", retryUnknown)
	}
	// A token no longer on disk is forgotten.
	c.Refresh(ctx, []string{"other"}, false)
	if c.Known("tok") != nil {
		t.Fatal("a token gone from disk kept its verdict")
	}
}

// TestLegacyRejectionConfirmed: the API server rejects a legacy Secret token
// for the moments before its Secret cache holds the populated Secret; a first
// rejection of such a token is asked again before it is believed. A bound
// token's rejection is believed at once, and a later rejection of a token
// once accepted too.
func TestLegacyRejectionConfirmed(t *testing.T) {
	legacy := jwt(t, map[string]any{"sub": "system:serviceaccount:kube-system:calico-node"})
	bound := jwt(t, map[string]any{"sub": "system:serviceaccount:kube-system:calico-node", "exp": 4102444800})
	for _, c := range []struct {
		name    string
		token   string
		answers []bool
		asks    int
		want    bool
	}{
		{"legacy, rejected while the cache is behind", legacy, []bool{false, true}, 2, true},
		{"legacy, rejected for good", legacy, []bool{false, false}, 2, false},
		{"bound, rejected", bound, []bool{false, true}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			asked := 0
			v := &VerdictCache{Period: 10 * time.Minute, Confirm: time.Millisecond,
				Check: func(context.Context, string) *bool { asked++; return ptr(c.answers[asked-1]) }}
			v.Refresh(context.Background(), []string{c.token}, false)
			if got := v.Known(c.token); got == nil || *got != c.want || asked != c.asks {
				t.Errorf("verdict %v after %d checks, want %t after %d", got, asked, c.want, c.asks)
			}
		})
	}
	// Accepted once, a later rejection stands: the cache cannot be behind.
	answers := []bool{true, false, true}
	asked := 0
	v := &VerdictCache{Period: time.Nanosecond, Confirm: time.Millisecond,
		Check: func(context.Context, string) *bool { asked++; return ptr(answers[asked-1]) }}
	v.Refresh(context.Background(), []string{legacy}, false)
	v.Refresh(context.Background(), []string{legacy}, false)
	if got := v.Known(legacy); got == nil || *got || asked != 2 {
		t.Errorf("verdict %v after %d checks, want rejected after 2", got, asked)
	}
}

// TestProbedFindingIsKeptAndPeriodic: a token a probe can judge is judged
// by it, not by Check; once when it first appears, then once per period,
// not at every refresh; an unreachable probe (no finding) keeps the last
// verdict; a token the probe cannot judge goes to Check.
func TestProbedFindingIsKeptAndPeriodic(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	checked, probed := 0, 0
	var answer Finding
	c := &VerdictCache{Period: 10 * time.Minute, Now: func() time.Time { return clock },
		Check: func(context.Context, string) *bool { checked++; return ptr(true) }}
	probe := func(_ context.Context, tok string) (Finding, bool) {
		if tok != "on-disk" {
			return Finding{}, false
		}
		probed++
		return answer, true
	}
	ctx := context.Background()
	answer = Finding{Accepted: ptr(true), Verdict: "forbidden", Message: "may not get clusterinformations"}
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	if f := c.Finding("on-disk"); f.Verdict != "forbidden" || probed != 1 || checked != 0 {
		t.Fatalf("finding %+v after %d probes and %d checks, want forbidden after 1 probe", f, probed, checked)
	}
	answer = Finding{} // unreachable
	clock = clock.Add(11 * time.Minute)
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	if f := c.Finding("on-disk"); f.Verdict != "forbidden" || probed != 2 {
		t.Fatalf("an unreachable probe changed the finding: %+v (%d probes)", f, probed)
	}
	// A review that agrees (accepted) does not erase the probe's verdict.
	c.CheckNow(ctx, "on-disk")
	if f := c.Finding("on-disk"); f.Verdict != "forbidden" {
		t.Fatalf("a review erased the probe's verdict: %+v", f)
	}
	c.RefreshProbed(ctx, []string{"on-disk", "replacement"}, false, probe)
	if v := c.Known("replacement"); v == nil || !*v || checked != 2 {
		t.Fatalf("a token no credential holds: verdict %v after %d checks, want accepted by Check", v, checked)
	}
}

// TestDueAsksAgainBeforeThePeriod: after Due, the next refresh probes a
// token whose verdict is fresh, and the finding stands until it answers;
// the one after waits for the period again.
func TestDueAsksAgainBeforeThePeriod(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	probed := 0
	answer := Finding{Accepted: ptr(true), Verdict: "ok"}
	c := &VerdictCache{Period: time.Hour, Now: func() time.Time { return clock },
		Check: func(context.Context, string) *bool { return ptr(true) }}
	probe := func(context.Context, string) (Finding, bool) { probed++; return answer, true }
	ctx := context.Background()
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	clock = clock.Add(time.Minute)
	c.Due()
	if f := c.Finding("on-disk"); f.Verdict != "ok" {
		t.Fatalf("Due erased the finding: %+v", f)
	}
	answer = Finding{Accepted: ptr(true), Verdict: "forbidden"}
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	if f := c.Finding("on-disk"); probed != 2 || f.Verdict != "forbidden" {
		t.Fatalf("after Due: %d probes, finding %+v; want 2, forbidden", probed, f)
	}
	clock = clock.Add(time.Minute)
	c.RefreshProbed(ctx, []string{"on-disk"}, false, probe)
	if probed != 2 {
		t.Fatalf("probed %d times; a token not due was probed again", probed)
	}
}

// TestReviewedTokenProbedOnceOnDisk: a token judged by review before any
// credential on disk held it (a repair asks about a token before writing
// it) is probed at the next refresh that finds it on disk, not a period
// later; until a credential holds it, no request is made for it; an
// unreachable probe keeps the review's finding and is tried again.
func TestReviewedTokenProbedOnceOnDisk(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	checks := 0
	c := &VerdictCache{Period: 10 * time.Minute, Now: func() time.Time { return clock },
		Check: func(context.Context, string) *bool { checks++; return ptr(true) }}
	ctx := context.Background()
	c.CheckNow(ctx, "tok")
	onDisk, probes := false, 0
	answer := Finding{Accepted: ptr(true), Verdict: "ok"}
	probe := func(context.Context, string) (Finding, bool) {
		if !onDisk {
			return Finding{}, false
		}
		probes++
		return answer, true
	}
	c.RefreshProbed(ctx, []string{"tok"}, false, probe)
	if checks != 1 || probes != 0 || c.Finding("tok").Verdict != "" {
		t.Fatalf("not on disk yet: %d checks, %d probes, verdict %q", checks, probes, c.Finding("tok").Verdict)
	}
	onDisk = true
	answer = Finding{} // unreachable
	c.RefreshProbed(ctx, []string{"tok"}, false, probe)
	if f := c.Finding("tok"); probes != 1 || f.Verdict != "" || f.Accepted == nil || !*f.Accepted {
		t.Fatalf("unreachable: %d probes, finding %+v", probes, f)
	}
	answer = Finding{Accepted: ptr(true), Verdict: "forbidden"}
	c.RefreshProbed(ctx, []string{"tok"}, false, probe)
	if f := c.Finding("tok"); probes != 2 || f.Verdict != "forbidden" || checks != 1 {
		t.Fatalf("on disk: %d probes, %d checks, finding %+v", probes, checks, f)
	}
	// Judged by its probe: periodic from now on.
	c.RefreshProbed(ctx, []string{"tok"}, false, probe)
	if probes != 2 {
		t.Fatalf("a probed token was probed again before its period: %d probes", probes)
	}
}
