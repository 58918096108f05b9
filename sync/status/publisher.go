package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Publisher tells the cluster what the passes found, apart from the
// passes: the condition patch and the status file write of one change (and
// an API server slow to take them) never delay the next change's write.
// What is published describes the node now, so a report not yet published
// is replaced by a newer one. A failed publish is retried with backoff,
// with the newest report by then. Each publish renews the Lease when due:
// the pass was reported, so the agent is alive whatever the node's state.
type Publisher struct {
	reporter *Reporter
	liveness *Liveness
	logger   *slog.Logger
	latest   *latestReport

	mu      sync.Mutex
	refused error // the last publish's refusal of the agent's own credential
}

// NewPublisher publishes through reporter and renews liveness (nil keeps
// no Lease).
func NewPublisher(reporter *Reporter, liveness *Liveness, logger *slog.Logger) *Publisher {
	return &Publisher{reporter: reporter, liveness: liveness, logger: logger, latest: newLatestReport()}
}

// Announce raises the events of one pass (see Reporter.Announce).
func (p *Publisher) Announce(rep *reconcile.Report, pass *reconcile.Pass, err error) {
	p.reporter.Announce(rep, pass, err)
}

// Publish publishes one report now and renews the Lease when due.
func (p *Publisher) Publish(ctx context.Context, rep *reconcile.Report) error {
	err := p.reporter.Publish(ctx, rep)
	if p.liveness != nil && rep.Rollout != nil {
		p.liveness.SetRollout(p.liveness.Rollout().Next(rep.Rollout.Decision, p.liveness.now()))
	}
	if p.liveness != nil && p.liveness.Due() {
		err = errors.Join(err, p.liveness.Renew(ctx))
	}
	p.mu.Lock()
	switch {
	case err == nil:
		p.refused = nil
	case OwnCredentialRefused(err):
		p.refused = fmt.Errorf("the API server refuses the agent's own requests: %w", err)
	}
	p.mu.Unlock()
	return err
}

// Refused is the last publish's error when the API server refused the
// agent's own credential (401) or its RBAC (403), until a publish succeeds:
// an agent that cannot report is not ready. An API server that does not
// answer is not the agent's fault and is not held against it.
func (p *Publisher) Refused() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// OwnCredentialRefused reports whether err holds the API server's 401 or
// 403 to a request the agent made with its own credential.
func OwnCredentialRefused(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
}

// Offer hands a report to Run, replacing one still waiting.
func (p *Publisher) Offer(rep *reconcile.Report) { p.latest.offer(rep) }

// Run publishes the reports offered until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	const first, most = 100 * time.Millisecond, 30 * time.Second
	delay := first
	for {
		rep, ok := p.latest.take(ctx)
		if !ok {
			return
		}
		err := p.Publish(ctx, rep)
		if err == nil {
			delay = first
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.logger.Error("report failed; retrying with backoff", "err", err)
		p.latest.retry(rep)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, most)
	}
}

// latestReport holds the newest report not yet published.
type latestReport struct {
	mu    sync.Mutex
	rep   *reconcile.Report
	ready chan struct{}
}

func newLatestReport() *latestReport { return &latestReport{ready: make(chan struct{}, 1)} }

// offer replaces the report waiting, if any.
func (l *latestReport) offer(rep *reconcile.Report) {
	l.mu.Lock()
	l.rep = rep
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// retry puts back a report that failed, unless a newer one came meanwhile.
func (l *latestReport) retry(rep *reconcile.Report) {
	l.mu.Lock()
	newer := l.rep != nil
	l.mu.Unlock()
	if !newer {
		l.offer(rep)
	}
}

// take waits for a report; false when ctx ends first.
func (l *latestReport) take(ctx context.Context) (*reconcile.Report, bool) {
	for {
		l.mu.Lock()
		rep := l.rep
		l.rep = nil
		l.mu.Unlock()
		if rep != nil {
			return rep, true
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-l.ready:
		}
	}
}
