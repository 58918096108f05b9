package inputs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
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

// Watch runs the informers the agent's sources start as they first need
// them (the CNI service account's namespace and the ConfigMaps this node's
// pod refers to are only known then), and calls Trigger on any change of
// what they cache. Each informer is made on its own rather than through a
// SharedInformerFactory: the factory links in informers and listers for
// every API group, which the agent, resident on every node, would carry.
// All stop at Stop.
type Watch struct {
	Client  kubernetes.Interface
	Trigger func(why string)

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewWatch is a Watch with no informer running yet.
func NewWatch(client kubernetes.Interface, trigger func(why string)) *Watch {
	return &Watch{Client: client, Trigger: trigger, stop: make(chan struct{})}
}

// firstListWait bounds how long the pass that starts an informer waits for
// its first list; after it the informer keeps trying, and the pass fails.
const firstListWait = 30 * time.Second

// start runs an informer until Stop and waits, a bounded time, for its
// first list.
func (w *Watch) start(inf cache.SharedIndexInformer) error {
	w.wg.Go(func() { inf.Run(w.stop) })
	ctx, cancel := context.WithTimeout(context.Background(), firstListWait)
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("the first list did not complete (is the API server reachable?)")
	}
	return nil
}

// Stop stops every informer and waits for them.
func (w *Watch) Stop() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

type metaObject interface{ GetResourceVersion() string }

// namespaceIndex is the index a lister's namespaced List and Get use, as a
// SharedInformerFactory would set it up; without it they warn and scan.
func namespaceIndex() cache.Indexers {
	return cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
}

// watchedConfigMap caches the one ConfigMap, by a metadata.name field
// selector, so a node watches one object rather than a namespace. The
// informer starts at the first read; until its first list completes (the
// API server is away) each read fails, and the pass reports it.
func (w *Watch) watchedConfigMap(namespace, name string) ConfigMapSource {
	var mu sync.Mutex
	var inf cache.SharedIndexInformer
	return func(context.Context) (*corev1.ConfigMap, error) {
		mu.Lock()
		started := inf != nil
		if !started {
			inf = coreinformers.NewFilteredConfigMapInformer(w.Client, namespace, 0, namespaceIndex(),
				func(o *metav1.ListOptions) {
					o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
				})
		}
		cur := inf
		mu.Unlock()
		if !started {
			if _, err := cur.AddEventHandler(handlerFor(w.Trigger, "ConfigMap")); err != nil {
				return nil, fmt.Errorf("watch ConfigMap: %w", err)
			}
			if err := w.start(cur); err != nil {
				return nil, fmt.Errorf("watch ConfigMap %s/%s: %w", namespace, name, err)
			}
		}
		if !cur.HasSynced() {
			return nil, fmt.Errorf("watch ConfigMap %s/%s: not synced yet", namespace, name)
		}
		cm, err := corelisters.NewConfigMapLister(cur.GetIndexer()).ConfigMaps(namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ConfigMap %s/%s not found", namespace, name)
		}
		return cm, err
	}
}

// watchedSecrets is the secret token source for the agent: the token
// Secrets of the CNI service account's namespace (or the one pinned
// Secret), watched from the first time a token is needed. The cache keeps
// only what the agent reads: other accounts' Secrets and every Secret's
// data but the token and CA are dropped as they arrive.
type watchedSecrets struct {
	watch  *Watch
	pinned string

	mu     sync.Mutex
	ns     string
	lister corelisters.SecretLister
	inf    cache.SharedIndexInformer
}

// Token reads the newest populated token Secret of the account (or the
// pinned one) from the cache.
func (w *watchedSecrets) Token(_ context.Context, need token.Need) (token.Token, error) {
	ns := need.Account.Namespace
	w.mu.Lock()
	if w.inf == nil {
		w.ns = ns
		w.inf = w.newInformer(ns, need.Account.Name)
		w.lister = corelisters.NewSecretLister(w.inf.GetIndexer())
		w.mu.Unlock()
		if err := w.watch.start(w.inf); err != nil {
			return token.Token{}, fmt.Errorf("watch token Secrets in %s: %w", ns, err)
		}
		w.mu.Lock()
	}
	inf, lister, watching := w.inf, w.lister, w.ns
	w.mu.Unlock()
	if watching != ns {
		return token.Token{}, fmt.Errorf("the CNI service account moved to namespace %s; the agent watches token Secrets in %s: restart it", ns, watching)
	}
	if !inf.HasSynced() {
		return token.Token{}, fmt.Errorf("watch token Secrets in %s: not synced yet", ns)
	}
	if w.pinned != "" {
		s, err := lister.Secrets(ns).Get(w.pinned)
		if apierrors.IsNotFound(err) {
			return token.Token{}, fmt.Errorf("--token-secret %s/%s not found", ns, w.pinned)
		}
		if err != nil {
			return token.Token{}, err
		}
		return TokenFromSecret(s)
	}
	all, err := lister.Secrets(ns).List(labels.Everything())
	if err != nil {
		return token.Token{}, err
	}
	s, err := PickTokenSecret(all, need.Account.Name)
	if err != nil {
		return token.Token{}, err
	}
	return TokenFromSecret(s)
}

func (w *watchedSecrets) newInformer(ns, account string) cache.SharedIndexInformer {
	sel := TokenSecretSelector
	if w.pinned != "" {
		sel = fields.OneTermEqualSelector("metadata.name", w.pinned).String()
	}
	inf := coreinformers.NewFilteredSecretInformer(w.watch.Client, ns, 0, namespaceIndex(),
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
		Handler: handlerFor(w.watch.Trigger, "token Secret"),
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
