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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// Agent is the node agent: it watches the ConfigMap, the token and the CNI
// directory, and runs every trigger through the one reconcile.
type Agent struct {
	Reconciler *Reconciler
	Client     kubernetes.Interface
	Config     *rest.Config
	Namespace  string
	ConfigMap  string
	// ServiceAccount and TokenSecret select token Secrets (secret source).
	ServiceAccount string
	TokenSecret    string
	// TokenSource is secret, tokenrequest or file; TokenFile for file.
	TokenSource      string
	TokenFile        string
	ResyncPeriod     time.Duration
	TokenCheckPeriod time.Duration
	Reporter         *Reporter
	Metrics          *Metrics
	Health           *Health
	Logger           *slog.Logger
	// ConfigMapOverride, when set, replaces the ConfigMap informer
	// (--configmap-file, --cni-network-config-file).
	ConfigMapOverride ConfigMapSource

	queue     workqueue.TypedRateLimitingInterface[string]
	triggered atomic.Int64              // unix nanos of the oldest trigger not yet reconciled
	errSince  time.Time                 // when the inputs first failed to give a desired state
	expiry    atomic.Pointer[time.Time] // the current token's expiry, from its claims
	lastCheck time.Time
	checked   []string // tokens on disk at the last check
	accepted  *bool
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
	var infs []cache.SharedIndexInformer
	if a.ConfigMapOverride != nil {
		a.Reconciler.ConfigMap = a.ConfigMapOverride
	} else {
		inf, err := a.configMapInformer()
		if err != nil {
			return err
		}
		infs = append(infs, inf)
	}
	dirs := []string{a.Reconciler.Dir.NetDir}
	switch a.TokenSource {
	case SourceSecret:
		inf, err := a.secretInformer()
		if err != nil {
			return err
		}
		infs = append(infs, inf)
	case SourceFile:
		dirs = append(dirs, filepath.Dir(a.TokenFile))
	}
	if err := os.MkdirAll(a.Reconciler.Dir.NetDir, 0o755); err != nil {
		return fmt.Errorf("create --cni-net-dir: %w", err)
	}
	tokenDir := ""
	if a.TokenSource == SourceFile {
		tokenDir = filepath.Dir(a.TokenFile)
	}
	managed := []string{cniconf.DefaultConfListName, cniconf.DefaultConfName, a.Reconciler.KubeconfigName}
	if a.Reconciler.ConfName != "" {
		managed = append(managed, a.Reconciler.ConfName)
	}
	netFilter := cniDirFilter(managed)
	relevant := func(path string) bool {
		if tokenDir != "" && filepath.Dir(path) == tokenDir {
			return true // kubelet swaps projected tokens through ..data symlinks
		}
		return netFilter(path)
	}
	if err := watchDirs(ctx, dirs, relevant, a.trigger, a.Logger); err != nil {
		return err
	}
	infCtx, stopInformers := context.WithCancel(ctx)
	var infWG gosync.WaitGroup
	synced := make([]cache.InformerSynced, 0, len(infs))
	for _, inf := range infs {
		infWG.Go(func() { inf.RunWithContext(infCtx) })
		synced = append(synced, inf.HasSynced)
	}
	defer func() {
		stopInformers()
		infWG.Wait()
	}()
	a.Logger.Info("waiting for informer caches")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	a.Logger.Info("caches synced; reconciling", "node", a.Reconciler.NodeName, "dir", a.Reconciler.Dir.NetDir)

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

// handler enqueues on any change; updates that did not change the
// ResourceVersion (informer resyncs) are skipped.
func (a *Agent) handler(kind string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.trigger(kind + " added") },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metaObject)
			n, ok2 := newObj.(metaObject)
			if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			a.trigger(kind + " updated")
		},
		DeleteFunc: func(any) { a.trigger(kind + " deleted") }, // tombstones need no unwrapping: only the key is queued
	}
}

type metaObject interface{ GetResourceVersion() string }

// namespaceIndex is the index a lister's namespaced List and Get use, as a
// SharedInformerFactory would set it up; without it they warn and scan.
func namespaceIndex() cache.Indexers {
	return cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
}

// configMapInformer caches the one ConfigMap, by a metadata.name field
// selector, so a node watches one object rather than a namespace.
func (a *Agent) configMapInformer() (cache.SharedIndexInformer, error) {
	inf := coreinformers.NewFilteredConfigMapInformer(a.Client, a.Namespace, 0, namespaceIndex(),
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.ConfigMap).String()
		})
	if _, err := inf.AddEventHandler(a.handler("ConfigMap")); err != nil {
		return nil, fmt.Errorf("watch ConfigMap: %w", err)
	}
	lister := corelisters.NewConfigMapLister(inf.GetIndexer())
	a.Reconciler.ConfigMap = func(context.Context) (*corev1.ConfigMap, error) {
		cm, err := lister.ConfigMaps(a.Namespace).Get(a.ConfigMap)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ConfigMap %s/%s not found", a.Namespace, a.ConfigMap)
		}
		return cm, err
	}
	return inf, nil
}

// secretInformer caches only token Secrets (or the pinned one) in the namespace.
func (a *Agent) secretInformer() (cache.SharedIndexInformer, error) {
	sel := TokenSecretSelector
	if a.TokenSecret != "" {
		sel = fields.OneTermEqualSelector("metadata.name", a.TokenSecret).String()
	}
	inf := coreinformers.NewFilteredSecretInformer(a.Client, a.Namespace, 0, namespaceIndex(),
		func(o *metav1.ListOptions) { o.FieldSelector = sel })
	h := a.handler("token Secret")
	filtered := cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s, ok := obj.(*corev1.Secret)
			return ok && (a.TokenSecret != "" || s.Annotations[corev1.ServiceAccountNameKey] == a.ServiceAccount)
		},
		Handler: h,
	}
	if _, err := inf.AddEventHandler(filtered); err != nil {
		return nil, fmt.Errorf("watch token Secrets: %w", err)
	}
	lister := corelisters.NewSecretLister(inf.GetIndexer())
	a.Reconciler.Token = TokenSourceFunc(func(context.Context) (Token, error) {
		if a.TokenSecret != "" {
			s, err := lister.Secrets(a.Namespace).Get(a.TokenSecret)
			if apierrors.IsNotFound(err) {
				return Token{}, fmt.Errorf("--token-secret %s/%s not found", a.Namespace, a.TokenSecret)
			}
			if err != nil {
				return Token{}, err
			}
			return TokenFromSecret(s)
		}
		all, err := lister.Secrets(a.Namespace).List(labels.Everything())
		if err != nil {
			return Token{}, err
		}
		s, err := PickTokenSecret(all, a.ServiceAccount)
		if err != nil {
			return Token{}, err
		}
		return TokenFromSecret(s)
	})
	return inf, nil
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
	a.Health.end(err == nil && retry == 0) // a deferred pass is not a good one
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
	if r, ok := a.Reconciler.Token.(renewer); ok {
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
const apiTimeout = 10 * time.Second

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
	for _, f := range rep.Files {
		if f.SettleFor > 0 {
			a.Logger.Debug("a file changed moments ago; waiting before acting", "path", f.Path)
			a.triggered.CompareAndSwap(0, since)
			return f.SettleFor, nil
		}
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
		rep.Token.Accepted = a.checkToken(ctx, want)
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
	if rerr := a.Reporter.Report(ctx, rep, err); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return 0, err
}

// TokenExpired fails once the token the agent last wrote has expired: the
// source could not renew it, and a restart by the kubelet is the next
// thing to try.
func (a *Agent) TokenExpired() error {
	if exp := a.expiry.Load(); exp != nil && time.Now().After(*exp) {
		return fmt.Errorf("the token on disk expired at %s and was not renewed", exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkToken asks the API server about the tokens on disk at start, when
// they change, and every --token-check-period.
func (a *Agent) checkToken(ctx context.Context, want *cniconf.Desired) *bool {
	tokens := a.Reconciler.Dir.TokensOnDisk(want)
	if len(tokens) == 0 {
		return nil
	}
	if a.lastCheck.IsZero() || time.Since(a.lastCheck) >= a.TokenCheckPeriod || !equalStrings(tokens, a.checked) {
		ctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		a.accepted = CheckAcceptedOnDisk(ctx, a.Config, a.Reconciler.Dir, want)
		a.lastCheck, a.checked = time.Now(), tokens
		if r, ok := a.Reconciler.Token.(renewer); ok && a.accepted != nil && !*a.accepted {
			a.Logger.Warn("the API server rejects the token on disk; requesting a new one")
			r.Invalidate()
			a.trigger("token rejected")
		}
	}
	return a.accepted
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
