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
	"syscall"
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

// handlerFor enqueues on any change; updates that did not change the
// ResourceVersion (informer resyncs) are skipped.
func handlerFor(trigger func(string), kind string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { trigger(kind + " added") },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metaObject)
			n, ok2 := newObj.(metaObject)
			if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			trigger(kind + " updated")
		},
		DeleteFunc: func(any) { trigger(kind + " deleted") }, // tombstones need no unwrapping: only the key is queued
	}
}

// startInformer runs an informer until Run ends and waits, a bounded time,
// for its first list.
func (a *Agent) startInformer(inf cache.SharedIndexInformer) error {
	a.infWG.Go(func() { inf.RunWithContext(a.infCtx) })
	ctx, cancel := context.WithTimeout(a.infCtx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("the first list did not complete (is the API server reachable?)")
	}
	return nil
}

// wireInputs points the reconciler at watched inputs.
func (a *Agent) wireInputs() error {
	switch {
	case a.InstallOverride != nil:
		a.Reconciler.Install = a.InstallOverride
	case a.Source == SourceConfigMap:
		cm, err := a.configMapInformer()
		if err != nil {
			return err
		}
		a.Reconciler.Install = InstallFromConfigMap(cm, a.ConfigMapKey, a.TemplateFile, os.LookupEnv,
			newCachedAccounts(APICluster{Client: a.Client}, a.ResyncPeriod), SourceInfo{Kind: SourceConfigMap})
		a.Reconciler.Fresh = InstallFromConfigMap(ConfigMapFromAPI(a.Client, a.Namespace, a.ConfigMap), a.ConfigMapKey, a.TemplateFile,
			os.LookupEnv, APICluster{Client: a.Client}, SourceInfo{Kind: SourceConfigMap})
	default:
		c := newWatchedCluster(a.Client, a.Reconciler.NodeName, a.trigger, a.startInformer)
		a.Reconciler.Install = InstallFromDaemonSet(c, a.DaemonSet, a.Reconciler.NodeName, os.LookupEnv, "")
		a.Reconciler.Fresh = InstallFromDaemonSet(APICluster{Client: a.Client}, a.DaemonSet, a.Reconciler.NodeName, os.LookupEnv, "")
	}
	secrets := func() TokenSource { return &watchedSecrets{agent: a, pinned: a.TokenSecret} }
	requests := func() TokenSource { return NewTokenRequester(a.Client, a.TokenTTL, nil) }
	switch a.TokenSource {
	case SourceFile:
		a.Reconciler.Token = TokenFromFile(a.TokenFile)
	case SourceSecret:
		a.Reconciler.Token = secrets()
	case SourceTokenRequest:
		a.Reconciler.Token = requests()
	default:
		a.Reconciler.Token = AutoToken{Secret: secrets(), Request: requests()}
	}
	return nil
}

type metaObject interface{ GetResourceVersion() string }

// namespaceIndex is the index a lister's namespaced List and Get use, as a
// SharedInformerFactory would set it up; without it they warn and scan.
func namespaceIndex() cache.Indexers {
	return cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
}

// configMapInformer caches the one ConfigMap, by a metadata.name field
// selector, so a node watches one object rather than a namespace.
func (a *Agent) configMapInformer() (ConfigMapSource, error) {
	inf := coreinformers.NewFilteredConfigMapInformer(a.Client, a.Namespace, 0, namespaceIndex(),
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.ConfigMap).String()
		})
	if _, err := inf.AddEventHandler(handlerFor(a.trigger, "ConfigMap")); err != nil {
		return nil, fmt.Errorf("watch ConfigMap: %w", err)
	}
	if err := a.startInformer(inf); err != nil {
		return nil, fmt.Errorf("watch ConfigMap %s/%s: %w", a.Namespace, a.ConfigMap, err)
	}
	lister := corelisters.NewConfigMapLister(inf.GetIndexer())
	return func(context.Context) (*corev1.ConfigMap, error) {
		cm, err := lister.ConfigMaps(a.Namespace).Get(a.ConfigMap)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ConfigMap %s/%s not found", a.Namespace, a.ConfigMap)
		}
		return cm, err
	}, nil
}

// watchedSecrets is the secret token source for the agent: the token
// Secrets of the CNI service account's namespace (or the one pinned
// Secret), watched from the first time a token is needed. The cache keeps
// only what the agent reads: other accounts' Secrets and every Secret's
// data but the token and CA are dropped as they arrive.
type watchedSecrets struct {
	agent  *Agent
	pinned string

	mu     gosync.Mutex
	ns     string
	lister corelisters.SecretLister
	inf    cache.SharedIndexInformer
}

// Token reads the newest populated token Secret of the account (or the
// pinned one) from the cache.
func (w *watchedSecrets) Token(_ context.Context, need TokenNeed) (Token, error) {
	ns := need.Account.Namespace
	w.mu.Lock()
	if w.inf == nil {
		w.ns = ns
		w.inf = w.newInformer(ns, need.Account.Name)
		w.lister = corelisters.NewSecretLister(w.inf.GetIndexer())
		w.mu.Unlock()
		if err := w.agent.startInformer(w.inf); err != nil {
			return Token{}, fmt.Errorf("watch token Secrets in %s: %w", ns, err)
		}
		w.mu.Lock()
	}
	inf, lister, watching := w.inf, w.lister, w.ns
	w.mu.Unlock()
	if watching != ns {
		return Token{}, fmt.Errorf("the CNI service account moved to namespace %s; the agent watches token Secrets in %s: restart it", ns, watching)
	}
	if !inf.HasSynced() {
		return Token{}, fmt.Errorf("watch token Secrets in %s: not synced yet", ns)
	}
	if w.pinned != "" {
		s, err := lister.Secrets(ns).Get(w.pinned)
		if apierrors.IsNotFound(err) {
			return Token{}, fmt.Errorf("--token-secret %s/%s not found", ns, w.pinned)
		}
		if err != nil {
			return Token{}, err
		}
		return TokenFromSecret(s)
	}
	all, err := lister.Secrets(ns).List(labels.Everything())
	if err != nil {
		return Token{}, err
	}
	s, err := PickTokenSecret(all, need.Account.Name)
	if err != nil {
		return Token{}, err
	}
	return TokenFromSecret(s)
}

func (w *watchedSecrets) newInformer(ns, account string) cache.SharedIndexInformer {
	sel := TokenSecretSelector
	if w.pinned != "" {
		sel = fields.OneTermEqualSelector("metadata.name", w.pinned).String()
	}
	inf := coreinformers.NewFilteredSecretInformer(w.agent.Client, ns, 0, namespaceIndex(),
		func(o *metav1.ListOptions) { o.FieldSelector = sel })
	_ = inf.SetTransform(keepTokenSecret(account, w.pinned))
	_, _ = inf.AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s, ok := obj.(*corev1.Secret)
			return ok && (w.pinned != "" || s.Annotations[corev1.ServiceAccountNameKey] == account)
		},
		Handler: handlerFor(w.agent.trigger, "token Secret"),
	})
	return inf
}

// keepTokenSecret is the secret informer's transform: what the cache keeps
// of a Secret. Another account's token never stays in memory; no managed
// fields, and of the data only the token and the CA.
func keepTokenSecret(account, pinned string) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return obj, nil
		}
		s.ManagedFields = nil
		mine := pinned != "" || s.Annotations[corev1.ServiceAccountNameKey] == account
		data := map[string][]byte{}
		if mine {
			for _, k := range []string{corev1.ServiceAccountTokenKey, corev1.ServiceAccountRootCAKey} {
				if v, ok := s.Data[k]; ok {
					data[k] = v
				}
			}
		}
		s.Data, s.StringData = data, nil
		return s, nil
	}
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

// NetDirGone fails when the CNI directory this process sees was removed
// from under it and cannot come back: a bind mount of the directory itself
// (not of its parent) keeps showing the removed directory, with no link
// left to it, and every file written there is lost to the runtime. Only a
// restart, which mounts the host's directory again, helps.
func (a *Agent) NetDirGone() error {
	fi, err := os.Stat(a.Reconciler.Dir.NetDir)
	if err != nil {
		return nil // gone altogether: the next pass creates it
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return fmt.Errorf("the CNI directory %s was removed on the host, but this container still sees it through a bind mount: restart the agent (mount the directory's parent to avoid this)", a.Reconciler.Dir.NetDir)
	}
	return nil
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

// checkToken asks for a new token when the API server rejects the one the
// agent itself wrote (its source's): a TokenRequest token is renewed at once.
// The verdicts come from the reconcile's VerdictCache, asked when a token
// appears on disk and every --token-check-period.
func (a *Agent) checkToken(want *cniconf.Desired, accepted *bool) {
	if a.Reconciler.Verdicts == nil || accepted == nil || *accepted {
		return
	}
	r := a.renewer()
	if r == nil {
		return
	}
	for _, t := range a.Reconciler.Dir.TokensOnDisk(want) {
		if t == want.Token {
			if v := a.Reconciler.Verdicts.Known(t); v != nil && !*v {
				a.Logger.Warn("the API server rejects the agent's own token; requesting a new one")
				r.Invalidate()
				a.trigger("token rejected")
			}
		}
	}
}

// renewer is the token source that renews on a schedule, if any.
func (a *Agent) renewer() renewer {
	src := a.Reconciler.Token
	if auto, ok := src.(AutoToken); ok {
		src = auto.Request
	}
	r, _ := src.(renewer)
	return r
}
