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

	reported    bool      // the last pass reached the cluster (condition, status)
	settleSince time.Time // when passes started waiting for a file to settle

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
	if err := watchDirs(ctx, dirs, relevant, a.trigger, a.Logger); err != nil {
		return err
	}
	a.Logger.Info("reconciling", "node", a.Reconciler.NodeName, "dir", a.Reconciler.Dir.NetDir, "source", a.Source)

	var wg gosync.WaitGroup
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
	rerr := a.Reporter.Report(ctx, rep, err)
	a.reported = rerr == nil
	if rerr != nil {
		err = errors.Join(err, rerr)
	}
	if a.Liveness != nil && a.Liveness.Due() {
		// The pass is reported: the agent is alive whatever its state.
		if lerr := a.Liveness.Renew(ctx); lerr != nil {
			err = errors.Join(err, lerr)
		}
	}
	return 0, err
}
