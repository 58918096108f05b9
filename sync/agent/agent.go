package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Config is what the agent's loop needs besides its parts.
type Config struct {
	// NetDir is the CNI directory watched; Managed the names in it the
	// agent writes (any conf a runtime would load is watched too).
	NetDir  string
	Managed []string
	// TokenFile, when set (--token-source=file), is watched too.
	TokenFile string
	// ResyncPeriod and TokenCheckPeriod are how often a pass runs at the
	// least, and how often the token on disk is checked.
	ResyncPeriod, TokenCheckPeriod time.Duration
	// Describe is logged when the loop starts.
	Describe []any
	// Sandbox, when set, watches the node's sandbox failures while the
	// node soaks a revision it applied in waves (soak). Nil: a revision
	// is never judged after it is applied.
	Sandbox SandboxSource
}

// Agent is the node agent: every trigger (an informer's event, a file
// event, the resync and token-check ticks, a token to renew, a sandbox
// failure on the node) goes through
// its one queue key to the one Reconcile, whose report it hands to the
// Publisher.
type Agent struct {
	cfg        Config
	queue      *Queue
	own        *OwnWrites
	reconciler *reconcile.Reconciler
	publisher  *status.Publisher
	metrics    *status.Metrics
	health     *status.Health
	logger     *slog.Logger

	errSince    time.Time                 // when the inputs first failed to give a desired state
	settleSince time.Time                 // when passes started waiting for a file to settle
	reported    bool                      // a pass has reached the cluster (condition, status)
	refused     string                    // why the token could not be replaced, as last logged
	verdict     string                    // the credential verdict, as last logged
	rollout     string                    // where the node stands on a rollout, as last logged
	expiry      atomic.Pointer[time.Time] // the current token's expiry, from its claims
	fault       atomic.Pointer[error]     // the last pass's own fault (reconcile.Pass.OwnFault)

	sandboxMu     sync.Mutex
	sandboxProbed time.Time // when a sandbox failure last made the credential due

	soakMu   sync.Mutex
	soakRev  string             // the revision whose soak is watched
	soakStop context.CancelFunc // ends that watch
	soakDone sync.WaitGroup
}

// NewAgent puts the parts together; it writes no field of any of them. own
// must be the OwnWrites whose Renaming the reconciler's Dir calls, and
// queue the one the inputs' watches trigger.
func NewAgent(cfg Config, queue *Queue, own *OwnWrites, r *reconcile.Reconciler, p *status.Publisher,
	m *status.Metrics, h *status.Health, logger *slog.Logger) *Agent {
	return &Agent{cfg: cfg, queue: queue, own: own, reconciler: r, publisher: p, metrics: m, health: h, logger: logger}
}

// Run watches and reconciles until ctx ends. On return no write is in
// flight.
func (a *Agent) Run(ctx context.Context) error {
	defer a.soakDone.Wait()
	ctx, cancel := context.WithCancel(ctx) // ends a soak's watch on any return
	defer cancel()
	defer a.queue.shutDown()
	dirs := []string{a.cfg.NetDir}
	tokenDir := ""
	if a.cfg.TokenFile != "" {
		tokenDir = filepath.Dir(a.cfg.TokenFile)
		dirs = append(dirs, tokenDir)
	}
	// The directory itself, never its parents: a parent that is missing
	// is a mistyped path, not a directory to invent.
	if err := os.Mkdir(a.cfg.NetDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create --cni-net-dir: %w", err)
	}
	netFilter := cniDirFilter(a.cfg.Managed)
	relevant := func(path string) bool {
		if tokenDir != "" && filepath.Dir(path) == tokenDir {
			// The token file itself, or the ..data link the kubelet
			// swaps to update a projected token; nothing else there.
			base := filepath.Base(path)
			return base == filepath.Base(a.cfg.TokenFile) || base == "..data"
		}
		return netFilter(path)
	}
	if err := watchDirs(ctx, dirs, relevant, a.queue.Trigger, a.own, a.logger); err != nil {
		return err
	}
	a.logger.Info("reconciling", a.cfg.Describe...)

	var wg sync.WaitGroup
	wg.Go(func() { a.publisher.Run(ctx) })
	wg.Go(func() { a.tick(ctx, a.cfg.ResyncPeriod, "resync") })
	wg.Go(func() { a.tick(ctx, a.cfg.TokenCheckPeriod, "token check") })
	a.queue.Trigger("start")
	go func() {
		<-ctx.Done()
		a.queue.shutDown()
	}()
	for a.processNext(ctx) {
	}
	wg.Wait()
	a.logger.Info("stopped")
	return nil
}

// tick triggers a reconcile every period until ctx ends.
func (a *Agent) tick(ctx context.Context, every time.Duration, why string) {
	wait.JitterUntilWithContext(ctx, func(context.Context) { a.queue.Trigger(why) }, every, 0, false)
}

// processNext runs one pass and schedules the next from what it says:
// later when it was held, with backoff when it failed, else at the token's
// renewal; and once a file still settling has settled, when the pass was
// reported without waiting for it.
func (a *Agent) processNext(ctx context.Context) bool {
	since, quit := a.queue.get()
	if quit {
		return false
	}
	defer a.queue.done()
	if ctx.Err() != nil {
		return false // shutting down: start no new write
	}
	a.health.Begin()
	next, err := a.pass(ctx, since)
	// Ready once a pass has completed and been reported, whatever the
	// node's state: an input error shows in the condition, the events and
	// the metrics, and must not stall the rollout of a fixed agent. A
	// held pass reported nothing.
	a.health.End(next.held == 0 && a.reported)
	switch {
	case next.held > 0:
		a.queue.after(next.held)
	case err != nil && ctx.Err() == nil:
		a.logger.Error("reconcile failed; retrying with backoff", "err", err)
		a.queue.backoff()
	default:
		a.queue.forget()
		if r := token.RenewerOf(a.reconciler.Token); r != nil {
			// The source's renewal, or its retry of a request that
			// failed, when still ahead. Under policy guard a pass that
			// writes no token does not ask the source, and leaves a
			// renewal time behind: nothing is due then.
			if at := r.NextRenewal(); at.After(time.Now()) {
				a.queue.after(time.Until(at))
			}
		}
	}
	if next.recheck > 0 {
		// A writer that changed a file for longer than maxSettle was
		// reported on without waiting; its file is looked at again once it
		// has settled, not at the next resync. A writer that stopped
		// leaving it corrupt sends no further event.
		a.queue.recheckAfter(next.recheck)
	}
	if next.wave > 0 {
		// The node waits for its rollout wave: the pass is due when
		// the wave opens, not at the next resync, and nothing polls
		// meanwhile (a peer's halt triggers a pass of its own).
		a.queue.recheckAfter(next.wave)
	}
	return true
}

// next is what a pass asks of the schedule: held > 0 runs it again after
// that long, without having reported it; recheck > 0 runs it again after
// that long although it was reported (a file still settling).
// wave > 0 runs it again when the node's rollout wave opens.
type next struct{ held, recheck, wave time.Duration }

// pass is one pass: the same Reconcile --once runs; then, unless it is held
// (hold), its report.
func (a *Agent) pass(ctx context.Context, since int64) (next, error) {
	rep, pass, err := a.reconciler.Reconcile(ctx, reconcile.ModeSync)
	if ctx.Err() == nil {
		a.fault.Store(&pass.OwnFault)
	}
	if d := a.hold(pass, err); d > 0 {
		a.queue.keepTriggered(since)
		return next{held: d}, nil
	}
	var n next
	if o := pass.Settling(); o != nil {
		n.recheck = o.SettleFor
	}
	if ro := pass.Rollout; ro.Waits() && ro.Phase == rollout.Waiting {
		// A moment past the opening, so the pass finds the wave open.
		n.wave = max(time.Until(ro.OpensAt), 0) + 10*time.Millisecond
	}
	a.soak(ctx, pass.Rollout)
	return n, a.report(ctx, rep, pass, err, since)
}

// maxSettle bounds how long a pass may go unreported while files settle.
const maxSettle = 5 * time.Second

// errorGrace is how long inputs may fail before the cluster is told. A
// token Secret is deleted and its successor populated within moments; that
// is a rotation, not an error worth a Warning. The files are untouched
// either way.
const errorGrace = 3 * time.Second

// hold says how long to wait before reporting a pass: a file a writer is
// half way through (so a truncate-then-write never shows as Corrupt), for
// at most maxSettle; inputs that failed, for errorGrace. 0 reports it now.
func (a *Agent) hold(pass *reconcile.Pass, err error) time.Duration {
	if o := pass.Settling(); o != nil {
		if a.settleSince.IsZero() {
			a.settleSince = time.Now()
		}
		if time.Since(a.settleSince) < maxSettle {
			a.logger.Debug("a file changed moments ago; waiting before acting", "path", o.Now.Path)
			return o.SettleFor
		}
	} else {
		a.settleSince = time.Time{}
	}
	if err != nil && pass.Desired == nil {
		if a.errSince.IsZero() {
			a.errSince = time.Now()
		}
		if wait := errorGrace - time.Since(a.errSince); wait > 0 {
			a.logger.Debug("inputs unavailable; checking again before reporting", "err", err)
			return wait
		}
		return 0
	}
	a.errSince = time.Time{}
	return 0
}

// report tells the metrics, the log, the events and the cluster what a
// pass found, and renews a token the API server rejects.
func (a *Agent) report(ctx context.Context, rep *reconcile.Report, pass *reconcile.Pass, err error, since int64) error {
	if err == nil && pass.Desired != nil {
		if pass.OwnTokenRejected {
			if r := token.RenewerOf(a.reconciler.Token); r != nil {
				a.logger.Warn("the API server rejects the agent's own token; requesting a new one")
				r.Invalidate()
				a.queue.Trigger("token rejected")
			}
		}
		a.expiry.Store(rep.Token.ExpiresAt)
	}
	if v := rep.Token.Verdict + " " + rep.Token.VerdictMessage; rep.Token.Verdict != "" && v != a.verdict {
		level := slog.LevelInfo
		if rep.Token.Verdict != "ok" {
			level = slog.LevelWarn
		}
		a.logger.Log(ctx, level, "the CNI plugin's credential verdict changed", "verdict", rep.Token.Verdict, "message", rep.Token.VerdictMessage)
		a.verdict = v
	}
	if rep.RepairRefused != a.refused {
		if rep.RepairRefused != "" {
			a.logger.Warn("the token in the node's CNI files cannot be replaced; retrying on the token source's schedule", "why", rep.RepairRefused)
		}
		a.refused = rep.RepairRefused
	}
	var triggered time.Time
	if since != 0 {
		triggered = time.Unix(0, since)
	}
	a.metrics.Observe(rep, pass, err, triggered)
	for _, o := range pass.Outcomes {
		if o.Action == "" {
			continue
		}
		attrs := []any{"path", o.Now.Path, "was", o.Found, "action", o.Action, "backup", o.Backup}
		// The time from the oldest trigger of the pass (an informer's
		// event, a file event, a tick) until this file was renamed into
		// place: the agent's own share of a change's latency.
		if at := a.own.renamedAt(o.Now.Path); !triggered.IsZero() && !at.Before(triggered) {
			attrs = append(attrs, "sinceTrigger", at.Sub(triggered))
		}
		a.logger.Info("wrote", attrs...)
	}
	if ro := pass.Rollout; ro != nil {
		if seen := ro.Revision + " " + string(ro.Phase) + " " + ro.Reason; seen != a.rollout {
			a.rollout = seen
			a.logger.Info("rollout", "revision", ro.Revision, "phase", ro.Phase, "mode", ro.Mode, "wave", ro.Wave, "reason", ro.Reason)
		}
	}
	a.publisher.Announce(rep, pass, err)
	if !a.reported {
		// Until the cluster has heard from the agent once, the pass is
		// published by the pass: readiness waits for it, and a failure
		// retries the pass with backoff.
		if rerr := a.publisher.Publish(ctx, rep); rerr != nil {
			return errors.Join(err, rerr)
		}
		a.reported = true
		return err
	}
	a.publisher.Offer(rep)
	return err
}
