package sync

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
