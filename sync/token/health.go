package token

import (
	"fmt"
	"time"
)

// Thresholds of a healthy token under policy guard: at least this share of
// its lifetime and this much time left.
const (
	minLifetimeLeft = 0.10
	minTimeLeft     = 5 * time.Minute
)

// Health judges the tokens found in the node's files under policy
// guard: any token is current when it is healthy, whichever process wrote
// it. Healthy is a JWT whose subject is the CNI service account, not
// rejected by the API server, and with enough of its lifetime left.
type Health struct {
	// Subject is the CNI service account's user name,
	// system:serviceaccount:<namespace>:<name>.
	Subject string
	// Verdict is the API server's last word on a token: false rejected,
	// nil not known (offline, or not checked yet).
	Verdict func(token string) *bool
	// Now is the node's clock.
	Now func() time.Time
}

// Judge is a cniconf.TokenJudge.
func (h Health) Judge(token string) (bool, string) {
	c, ok := parseJWT(token)
	if !ok {
		return false, "unreadable: not a service-account token (JWT)"
	}
	if c.Sub != h.Subject {
		return false, fmt.Sprintf("for another account (%s, want %s)", c.Sub, h.Subject)
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	if c.Exp != nil {
		exp := time.Unix(int64(*c.Exp), 0)
		left := exp.Sub(now)
		switch {
		case left <= 0:
			return false, "expired at " + exp.UTC().Format(time.RFC3339)
		case left < minTimeLeft:
			return false, fmt.Sprintf("expiring at %s (less than %s left)", exp.UTC().Format(time.RFC3339), minTimeLeft)
		case c.Iat != nil && float64(left) < minLifetimeLeft*float64(exp.Sub(time.Unix(int64(*c.Iat), 0))):
			return false, fmt.Sprintf("expiring at %s (less than %.0f%% of its lifetime left)", exp.UTC().Format(time.RFC3339), minLifetimeLeft*100)
		}
	}
	if h.Verdict != nil {
		if v := h.Verdict(token); v != nil && !*v {
			return false, "rejected by the API server"
		}
	}
	return true, ""
}

// RepairDue reports whether a pass under policy guard will write the
// source's token: a file is missing its token (none on disk), or one holds
// an unhealthy one. It is the one place that says so; cniconf asks the same
// judge, file by file, through the desired state.
func RepairDue(onDisk []string, h Health) bool {
	if len(onDisk) == 0 {
		return true
	}
	for _, t := range onDisk {
		if ok, _ := h.Judge(t); !ok {
			return true
		}
	}
	return false
}
