package agent

import (
	"strings"
	"testing"
	"time"
)

func TestTokenExpiredFailsLiveness(t *testing.T) {
	a := &Agent{}
	if a.TokenExpired() != nil {
		t.Fatal("no token yet must not fail liveness")
	}
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	a.expiry.Store(&future)
	if a.TokenExpired() != nil {
		t.Fatal("a valid token failed liveness")
	}
	a.expiry.Store(&past)
	if err := a.TokenExpired(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired token must fail liveness: %v", err)
	}
}
