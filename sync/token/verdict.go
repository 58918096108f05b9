package token

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// VerdictCache keeps the API server's verdict on each token the node's files
// held, so a token is checked at start, when it first appears, and every
// period, not at every pass. An unknown verdict (the server did not answer)
// never erases a known one for the same token; the token is checked again
// sooner instead.
type VerdictCache struct {
	// Check asks the API server: false rejected, nil could not tell.
	Check  func(ctx context.Context, token string) *bool
	Period time.Duration
	Now    func() time.Time
	// Confirm is how long after a legacy token's first answer, a
	// rejection, it is asked again (0: confirmRejection).
	Confirm time.Duration

	mu      sync.Mutex
	entries map[[32]byte]verdict
}

type verdict struct {
	accepted *bool
	// finding is the last answer that said something of the token.
	finding Finding
	at      time.Time // when it was last asked
	known   time.Time // when the verdict was last known
	// unanswered: the last check got no verdict (the server was away);
	// the token is asked again after retryUnknown, not a whole period.
	unanswered bool
}

// Finding is one check's word on a token. A check that made the plugin's
// own request with the credential on disk (a probe) gives its Verdict; one
// that only asked who the token is leaves it empty.
type Finding struct {
	// Accepted: the API server authenticated the token; false rejected
	// (or expired); nil the check could not tell.
	Accepted *bool
	// Verdict is the probe's: ok, expired, rejected, forbidden or
	// untrusted; "" when no probe judged the token.
	Verdict string
	// Message says why, in words an operator can act on (forbidden,
	// untrusted); never the token.
	Message string
}

// A ProbeFunc judges a token by its plugin's own request with the
// credential that holds it. ok is false when it cannot (no credential on
// disk holds the token): the cache's Check is asked instead.
type ProbeFunc func(ctx context.Context, token string) (f Finding, ok bool)

// retryUnknown is how soon a token whose check failed is asked again.
const retryUnknown = 30 * time.Second

// confirmRejection is how long after a legacy token's first answer, a
// rejection, it is asked again.
const confirmRejection = time.Second

func (c *VerdictCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Refresh checks the tokens that are due: new ones, ones whose verdict is
// older than Period, ones whose last check failed a while ago; with force,
// all of them. Tokens not given are forgotten.
func (c *VerdictCache) Refresh(ctx context.Context, tokens []string, force bool) {
	c.RefreshProbed(ctx, tokens, force, nil)
}

// RefreshProbed is Refresh with a probe: a due token that probe can judge
// is judged by it (the plugin's own request), any other by Check. Nothing
// is probed that is not due.
func (c *VerdictCache) RefreshProbed(ctx context.Context, tokens []string, force bool, probe ProbeFunc) {
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[[32]byte]verdict{}
	}
	now := c.now()
	var due, unprobed []string
	keep := map[[32]byte]verdict{}
	for _, t := range tokens {
		k := sha256.Sum256([]byte(t))
		e, ok := c.entries[k]
		switch {
		case !ok, force, !e.unanswered && now.Sub(e.at) >= c.Period, e.unanswered && now.Sub(e.at) >= retryUnknown:
			due = append(due, t)
		case probe != nil && e.finding.Accepted != nil && e.finding.Verdict == "":
			unprobed = append(unprobed, t)
		}
		keep[k] = e
	}
	c.entries = keep
	c.mu.Unlock()
	// A token judged by review alone (its file was not written yet, or a
	// repair asked about it before writing it) is probed as soon as a
	// credential on disk holds it, not a period later: until then there
	// is no verdict on what the plugin gets. Only the probe is asked (it
	// makes no request when no credential holds the token), and an
	// answer that says nothing is not kept: the next refresh tries again.
	for _, t := range unprobed {
		if f, ok := probe(ctx, t); ok && f.Accepted != nil {
			c.keep(t, f)
		}
	}
	for _, t := range due {
		ask := func(ctx context.Context) Finding {
			if probe != nil {
				if f, ok := probe(ctx, t); ok {
					return f
				}
			}
			return Finding{Accepted: c.Check(ctx, t)}
		}
		f := ask(ctx)
		if v := f.Accepted; v != nil && !*v && c.Known(t) == nil && Legacy(t) {
			f = c.confirm(ctx, ask, f)
		}
		c.keep(t, f)
	}
}

// keep records a check's finding; one that says nothing keeps the last.
func (c *VerdictCache) keep(token string, f Finding) {
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[[32]byte]verdict{}
	}
	e := c.entries[k]
	e.at, e.unanswered = c.now(), f.Accepted == nil
	if f.Accepted != nil {
		if f.Verdict == "" && e.finding.Accepted != nil && *e.finding.Accepted == *f.Accepted {
			// A check by review agrees with the last probe: the
			// probe's verdict, the finer one, stands.
			f = e.finding
		}
		e.accepted, e.finding, e.known = f.Accepted, f, e.at
	}
	c.entries[k] = e
}

// confirm asks about a legacy token once more before a first rejection is
// believed. The API server authenticates a legacy Secret token against its
// own cache of Secrets, and rejects it ("does not match server's copy") for
// the moments before that cache has the Secret as the token controller
// populated it; the agent, watching the same Secret, asks within them. Taken
// at its word, the rejection would stand for a whole period.
func (c *VerdictCache) confirm(ctx context.Context, ask func(context.Context) Finding, first Finding) Finding {
	wait := c.Confirm
	if wait == 0 {
		wait = confirmRejection
	}
	select {
	case <-time.After(wait):
		if f := ask(ctx); f.Accepted != nil {
			return f
		}
	case <-ctx.Done():
	}
	return first
}

// Due makes every token the cache holds due, so the next Refresh asks
// about each again, as about a token just seen; the verdicts known stand
// until then. The agent calls it when the kubelet says a sandbox failed on
// the node: the check period is too long to wait for.
func (c *VerdictCache) Due() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		e.at = time.Time{}
		c.entries[k] = e
	}
}

// Known is the last verdict known for a token, nil when none is.
func (c *VerdictCache) Known(token string) *bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[sha256.Sum256([]byte(token))].accepted
}

// Finding is the last finding known for a token: its Accepted is nil when
// none is.
func (c *VerdictCache) Finding(token string) Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[sha256.Sum256([]byte(token))].finding
}

// CheckNow asks the API server about one token now, whatever the cache
// holds, and keeps the answer.
func (c *VerdictCache) CheckNow(ctx context.Context, token string) *bool {
	v := c.Check(ctx, token)
	c.keep(token, Finding{Accepted: v})
	return v
}
