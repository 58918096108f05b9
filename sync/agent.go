package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// Agent is the node agent: it watches its inputs, the token and the CNI
// directory, and runs every trigger through the one reconcile.
type Agent struct {
	Reconciler *Reconciler
	Client     kubernetes.Interface
	Config     *rest.Config
	// Source is SourceDaemonSet or SourceConfigMap (auto is decided by the
	// caller). DaemonSet is --calico-daemonset; Namespace, ConfigMap,
	// ConfigMapKey and TemplateFile are source configmap's.
	Source       string
	DaemonSet    string
	Namespace    string
	ConfigMap    string
	ConfigMapKey string
	TemplateFile string
	// TokenSource is auto, secret, tokenrequest or file; TokenSecret pins a
	// Secret, TokenFile is the file source's; TokenTTL for tokenrequest.
	TokenSource      string
	TokenSecret      string
	TokenFile        string
	TokenTTL         time.Duration
	ResyncPeriod     time.Duration
	TokenCheckPeriod time.Duration
	Reporter         *Reporter
	// Liveness is the agent's Lease, renewed every resync period; nil
	// keeps none.
	Liveness *Liveness
	Metrics  *Metrics
	Health   *Health
	Logger   *slog.Logger
	// InstallOverride, when set, replaces the watched inputs
	// (--configmap-file, --manifest-file, --cni-network-config-file).
	InstallOverride InstallSource

	queue     workqueue.TypedRateLimitingInterface[string]
	triggered atomic.Int64              // unix nanos of the oldest trigger not yet reconciled
	errSince  time.Time                 // when the inputs first failed to give a desired state
	expiry    atomic.Pointer[time.Time] // the current token's expiry, from its claims

	reported    bool          // a pass has reached the cluster (condition, status)
	reports     *latestReport // the newest pass's report, for reportLoop
	settleSince time.Time     // when passes started waiting for a file to settle

	infCtx context.Context
	infWG  gosync.WaitGroup
}

// queueKey is the only key: the node's files are reconciled as one.
const queueKey = "node"

// Run watches and reconciles until ctx ends. The informers are synced before
// the first write. On return no write is in flight.
func (a *Agent) Run(ctx context.Context) error {
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "calico-cni-sync"})
	defer a.queue.ShutDown()

	// Each informer is made on its own rather than through a
	// SharedInformerFactory: the factory links in informers and listers for
	// every API group, which the agent, resident on every node, would carry.
	// Informers start when the inputs first need them (the CNI service
	// account's namespace, the ConfigMaps this node's pod refers to, are
	// only known then), and all stop before Run returns.
	infCtx, stopInformers := context.WithCancel(ctx)
	a.infCtx = infCtx
	defer func() {
		stopInformers()
		a.infWG.Wait()
	}()
	if err := a.wireInputs(); err != nil {
		return err
	}
	dirs := []string{a.Reconciler.Dir.NetDir}
	tokenDir := ""
	if a.TokenSource == SourceFile {
		tokenDir = filepath.Dir(a.TokenFile)
		dirs = append(dirs, tokenDir)
	}
	if err := os.MkdirAll(a.Reconciler.Dir.NetDir, 0o755); err != nil {
		return fmt.Errorf("create --cni-net-dir: %w", err)
	}
	managed := []string{cniconf.DefaultConfListName, cniconf.DefaultConfName, a.Reconciler.KubeconfigName, "10-canal.conflist"}
	if a.Reconciler.ConfName != "" {
		managed = append(managed, a.Reconciler.ConfName)
	}
	netFilter := cniDirFilter(managed)
	relevant := func(path string) bool {
		if tokenDir != "" && filepath.Dir(path) == tokenDir {
			// The token file itself, or the ..data link the kubelet
			// swaps to update a projected token; nothing else there.
			base := filepath.Base(path)
			return base == filepath.Base(a.TokenFile) || base == "..data"
		}
		return netFilter(path)
	}
	own := &ownWrites{}
	a.Reconciler.Dir.Renaming = own.renaming
	if err := watchDirs(ctx, dirs, relevant, a.trigger, own, a.Logger); err != nil {
		return err
	}
	a.Logger.Info("reconciling", "node", a.Reconciler.NodeName, "dir", a.Reconciler.Dir.NetDir, "source", a.Source)

	var wg gosync.WaitGroup
	a.reports = newLatestReport()
	wg.Go(func() { a.reportLoop(ctx) })
	wg.Go(func() { a.tick(ctx, a.ResyncPeriod, "resync") })
	wg.Go(func() { a.tick(ctx, a.TokenCheckPeriod, "token check") })
	a.trigger("start")
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.processNext(ctx) {
	}
	wg.Wait()
	a.Logger.Info("stopped")
	return nil
}

// tick triggers a reconcile every period until ctx ends.
func (a *Agent) tick(ctx context.Context, every time.Duration, why string) {
	wait.JitterUntilWithContext(ctx, func(context.Context) { a.trigger(why) }, every, 0, false)
}

// trigger enqueues the one key; bursts coalesce in the queue. The time of the
// oldest pending trigger is kept for the latency histogram.
func (a *Agent) trigger(why string) {
	a.triggered.CompareAndSwap(0, time.Now().UnixNano())
	a.Logger.Debug("trigger", "why", why)
	a.queue.Add(queueKey)
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if ctx.Err() != nil {
		return false // shutting down: start no new write
	}
	since := a.triggered.Swap(0)
	a.Health.begin()
	retry, err := a.reconcile(ctx, since)
	// Ready once a pass has completed and been reported, whatever the
	// node's state: an input error shows in the condition, the events and
	// the metrics, and must not stall the rollout of a fixed agent. A
	// deferred pass reported nothing.
	a.Health.end(retry == 0 && a.reported)
	if retry > 0 {
		a.queue.Forget(key)
		a.queue.AddAfter(key, retry)
		return true
	}
	if err != nil && ctx.Err() == nil {
		a.Logger.Error("reconcile failed; retrying with backoff", "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	if r := a.renewer(); r != nil {
		if at := r.NextRenewal(); !at.IsZero() {
			a.queue.AddAfter(key, time.Until(at))
		}
	}
	return true
}

// renewer is a token source that renews its token on a schedule.
type renewer interface {
	NextRenewal() time.Time
	Invalidate()
}

// apiTimeout bounds each request the reconcile loop makes itself, so a
// server that accepts connections but does not answer cannot wedge it.
var apiTimeout = 10 * time.Second

// maxSettle bounds how long a pass may go unreported while files settle.
const maxSettle = 5 * time.Second

// errorGrace is how long inputs may fail before the cluster is told. A
// token Secret is deleted and its successor populated within moments; that
// is a rotation, not an error worth a Warning. The files are untouched
// either way.
const errorGrace = 3 * time.Second

// reconcile is one pass: the same Reconcile --once runs, then the token
// check when due, then the report to the cluster. A positive duration asks
// for another pass after it without reporting this one.
func (a *Agent) reconcile(ctx context.Context, since int64) (time.Duration, error) {
	rep, want, err := a.Reconciler.Reconcile(ctx, ModeSync)
	settling := false
	for _, f := range rep.Files {
		if f.SettleFor > 0 {
			settling = true
			if a.settleSince.IsZero() {
				a.settleSince = time.Now()
			}
			// A writer half way through: the pass is not reported yet,
			// so a truncate-then-write never shows as Corrupt. But a file
			// that keeps changing must not keep the node unreported:
			// after maxSettle the pass is reported as it stands.
			if time.Since(a.settleSince) < maxSettle {
				a.Logger.Debug("a file changed moments ago; waiting before acting", "path", f.Path)
				a.triggered.CompareAndSwap(0, since)
				return f.SettleFor, nil
			}
		}
	}
	if !settling {
		a.settleSince = time.Time{}
	}
	if err != nil && want == nil {
		if a.errSince.IsZero() {
			a.errSince = time.Now()
		}
		if wait := errorGrace - time.Since(a.errSince); wait > 0 {
			a.Logger.Debug("inputs unavailable; checking again before reporting", "err", err)
			a.triggered.CompareAndSwap(0, since)
			return wait, nil
		}
	} else {
		a.errSince = time.Time{}
	}
	if err == nil && want != nil {
		a.checkToken(want, rep.Token.Accepted)
		a.expiry.Store(rep.Token.ExpiresAt)
	}
	var triggered time.Time
	if since != 0 {
		triggered = time.Unix(0, since)
	}
	a.Metrics.observe(rep, err, triggered)
	for _, f := range rep.Files {
		if f.Action != cniconf.ActionNone {
			a.Logger.Info("wrote", "path", f.Path, "was", f.Found, "action", f.Action, "backup", f.Backup)
		}
	}
	a.Reporter.Announce(rep, err)
	if !a.reported {
		// Until the cluster has heard from the agent once, the pass is
		// published by the pass: readiness waits for it, and a failure
		// retries the pass with backoff.
		if rerr := a.publish(ctx, rep); rerr != nil {
			return 0, errors.Join(err, rerr)
		}
		a.reported = true
		return 0, err
	}
	a.reports.offer(rep)
	return 0, err
}

// publish tells the cluster what a pass found, and renews the Lease when
// due: the pass is reported, so the agent is alive whatever its state.
func (a *Agent) publish(ctx context.Context, rep *Report) error {
	err := a.Reporter.Publish(ctx, rep)
	if a.Liveness != nil && a.Liveness.Due() {
		err = errors.Join(err, a.Liveness.Renew(ctx))
	}
	return err
}

// reportLoop publishes the passes' reports once the first is out, apart
// from the passes: the condition patch and the status file write of one
// change (and an API server slow to take them) never delay the next
// change's write. What is published describes the node now, so a report
// not yet published is replaced by a newer one. A failed publish is
// retried with backoff, with the newest report by then.
func (a *Agent) reportLoop(ctx context.Context) {
	const first, most = 100 * time.Millisecond, 30 * time.Second
	delay := first
	for {
		rep, ok := a.reports.take(ctx)
		if !ok {
			return
		}
		err := a.publish(ctx, rep)
		if err == nil {
			delay = first
			continue
		}
		if ctx.Err() != nil {
			return
		}
		a.Logger.Error("report failed; retrying with backoff", "err", err)
		a.reports.retry(rep)
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
	mu    gosync.Mutex
	rep   *Report
	ready chan struct{}
}

func newLatestReport() *latestReport { return &latestReport{ready: make(chan struct{}, 1)} }

// offer replaces the report waiting, if any.
func (l *latestReport) offer(rep *Report) {
	l.mu.Lock()
	l.rep = rep
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// retry puts back a report that failed, unless a newer one came meanwhile.
func (l *latestReport) retry(rep *Report) {
	l.mu.Lock()
	newer := l.rep != nil
	l.mu.Unlock()
	if !newer {
		l.offer(rep)
	}
}

// take waits for a report; false when ctx ends first.
func (l *latestReport) take(ctx context.Context) (*Report, bool) {
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
