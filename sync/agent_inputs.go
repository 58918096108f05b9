package sync

import (
	"context"
	"errors"
	"fmt"
	"os"
	gosync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

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
