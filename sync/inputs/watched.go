package inputs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// watchedCluster is source daemonset for the agent. It caches a handful of
// objects, never a namespace:
//
//   - this node's pods in the DaemonSet's namespace (a spec.nodeName field
//     selector), whose change is what a calico-node restart or rolling
//     update looks like; none where the agent may not list them;
//   - each ConfigMap the install-cni environment refers to, by name, added
//     as the pod starts to refer to it;
//   - the DaemonSet itself is read with a GET when the pod changes or there
//     is none: a watch would bring every status update of a cluster-wide
//     object (its ready counts change with every pod) to every node. A
//     candidate found absent (calico-system/calico-node on a manifest
//     install) is not asked for again until a calico pod on this node
//     changes, or after recheck: an install or a migration that creates it
//     rolls this node's calico pods;
//   - whether a ServiceAccount exists, likewise read again only when the
//     pod changes.
type watchedCluster struct {
	client  kubernetes.Interface
	node    string
	trigger func(why string)
	start   func(cache.SharedIndexInformer) error // runs and syncs an informer
	// daemonSets are the DaemonSets whose pods matter: a change of another
	// pod on this node (kube-proxy, coredns) makes no pass.
	daemonSets []types.NamespacedName
	recheck    time.Duration

	mu         sync.Mutex
	pods       map[string]cache.SharedIndexInformer // by namespace
	configMaps map[string]cache.SharedIndexInformer // by namespace/name
	ds         map[string]*appsv1.DaemonSet         // by namespace/name, as last read
	dsPod      map[string]string                    // the pod resourceVersion each DaemonSet was read at
	accounts   map[string]bool
	accountsAt string
	// podsGen counts the changes of this node's calico pods; absent holds,
	// for a DaemonSet found absent, the podsGen and the time it was read at.
	podsGen uint64
	absent  map[string]absentRead
	// podsRefused holds the namespaces whose pods the agent may not list,
	// where no pod informer is started.
	podsRefused map[string]refusal
}

// refusal is a list of pods the API server refused (403), and when.
type refusal struct {
	err error
	at  time.Time
}

type absentRead struct {
	podsGen uint64
	at      time.Time
}

// newWatchedCluster reads the DaemonSets named (the candidates when
// none is) for node; an absent one is asked for again after recheck at the
// latest.
func newWatchedCluster(client kubernetes.Interface, node string, daemonSets []types.NamespacedName, recheck time.Duration,
	trigger func(string), start func(cache.SharedIndexInformer) error) *watchedCluster {
	return &watchedCluster{client: client, node: node, daemonSets: daemonSets, recheck: recheck, trigger: trigger, start: start,
		pods: map[string]cache.SharedIndexInformer{}, configMaps: map[string]cache.SharedIndexInformer{},
		ds: map[string]*appsv1.DaemonSet{}, dsPod: map[string]string{}, accounts: map[string]bool{},
		absent: map[string]absentRead{}, podsRefused: map[string]refusal{}}
}

// DaemonSet returns the DaemonSet as last read; it is read again when this
// node's pod of it changed (or there is none), which is when a new spec can
// matter here.
func (c *watchedCluster) DaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	cached, seen := c.ds[key]
	gen := c.podsGen
	if a, ok := c.absent[key]; ok && seen && cached == nil && a.podsGen == gen && time.Since(a.at) < c.recheck {
		c.mu.Unlock()
		return nil, nil
	}
	c.mu.Unlock()
	if seen && cached != nil {
		if pod, err := c.NodePod(ctx, cached, c.node); err == nil && pod != nil && c.readAt(key) == pod.ResourceVersion {
			return cached, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	ds, err := c.client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ds, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get DaemonSet %s: %w", key, err)
	}
	at := ""
	if ds != nil {
		if pod, err := c.NodePod(ctx, ds, c.node); err == nil && pod != nil {
			at = pod.ResourceVersion
		}
	}
	c.mu.Lock()
	c.ds[key], c.dsPod[key] = ds, at
	delete(c.absent, key)
	if ds == nil {
		c.absent[key] = absentRead{podsGen: gen, at: time.Now()}
	}
	c.mu.Unlock()
	return ds, nil
}

func (c *watchedCluster) readAt(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dsPod[key]
}

// NodePod is this node's pod of ds, from the namespace's pod informer
// (started on first use).
func (c *watchedCluster) NodePod(_ context.Context, ds *appsv1.DaemonSet, node string) (*corev1.Pod, error) {
	lister, err := c.podLister(ds.Namespace)
	if err != nil {
		return nil, err
	}
	pods, err := lister.Pods(ds.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	pod := PodOf(ds, pods)
	if pod != nil {
		c.mu.Lock()
		if c.accountsAt != pod.ResourceVersion {
			c.accounts, c.accountsAt = map[string]bool{}, pod.ResourceVersion
		}
		c.mu.Unlock()
	}
	return pod, nil
}

func (c *watchedCluster) podLister(namespace string) (corelisters.PodLister, error) {
	const what = "calico-node pods on this node"
	if err := c.podsAllowed(namespace); err != nil {
		return nil, err
	}
	changed := func(why string) {
		c.mu.Lock()
		c.podsGen++
		c.mu.Unlock()
		c.trigger(why)
	}
	inf, err := c.informer(c.pods, namespace, what, func() cache.SharedIndexInformer {
		return coreinformers.NewFilteredPodInformer(c.client, namespace, 0, namespaceIndex(), func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.node).String()
		})
	}, cache.FilteringResourceEventHandler{FilterFunc: c.calicoPod, Handler: handlerFor(changed, what)})
	if err != nil {
		return nil, err
	}
	return corelisters.NewPodLister(inf.GetIndexer()), nil
}

// podsAllowed lists this node's pods in namespace once before its informer
// is started: where the agent may not list them (403), no informer is
// started, since its reflector would retry the refused list, and log it,
// for as long as the agent runs. The refusal is the answer until recheck
// has passed, then the list is tried again (a Role added later is found).
func (c *watchedCluster) podsAllowed(namespace string) error {
	c.mu.Lock()
	_, started := c.pods[namespace]
	f, refused := c.podsRefused[namespace]
	c.mu.Unlock()
	if started {
		return nil
	}
	if refused && time.Since(f.at) < c.recheck {
		return f.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), APITimeout)
	defer cancel()
	_, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{Limit: 1,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", c.node).String()})
	c.mu.Lock()
	defer c.mu.Unlock()
	if apierrors.IsForbidden(err) {
		err = fmt.Errorf("list pods on node %s in %s: %w", c.node, namespace, err)
		c.podsRefused[namespace] = refusal{err: err, at: time.Now()}
		return err
	}
	delete(c.podsRefused, namespace)
	return nil // any other failure is the informer's to retry
}

// calicoPod reports whether a pod (or its tombstone) is controlled by one of
// the DaemonSets read: only such a pod's change can change the inputs.
func (c *watchedCluster) calicoPod(obj any) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return true // cannot tell: a pass too many is harmless
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "DaemonSet" {
		return false
	}
	return slices.Contains(c.daemonSets, types.NamespacedName{Namespace: p.Namespace, Name: ref.Name})
}

// informer returns the informer under key in m, made, started and synced on
// first use, handler receiving its events. One that has not synced yet (the
// API server is away) is an error for this pass, and stays running for the
// next.
func (c *watchedCluster) informer(m map[string]cache.SharedIndexInformer, key, what string, mk func() cache.SharedIndexInformer, handler cache.ResourceEventHandler) (cache.SharedIndexInformer, error) {
	c.mu.Lock()
	inf, ok := m[key]
	if !ok {
		inf = mk()
		m[key] = inf
	}
	c.mu.Unlock()
	if !ok {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
		if err := c.start(inf); err != nil {
			return nil, fmt.Errorf("watch %s (%s): %w", what, key, err)
		}
	}
	if !inf.HasSynced() {
		return nil, fmt.Errorf("watch %s (%s): not synced yet", what, key)
	}
	return inf, nil
}

// ConfigMap is read from a watch of that one ConfigMap, started on first
// use: from then on a change to it reaches the node at once.
func (c *watchedCluster) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	key := namespace + "/" + name
	inf, err := c.informer(c.configMaps, key, "ConfigMap", func() cache.SharedIndexInformer {
		return coreinformers.NewFilteredConfigMapInformer(c.client, namespace, 0, namespaceIndex(), func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}, handlerFor(c.trigger, "ConfigMap"))
	if err != nil {
		return nil, err
	}
	cm, err := corelisters.NewConfigMapLister(inf.GetIndexer()).ConfigMaps(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

// Node is read with a GET, only when several candidate DaemonSets exist
// and none has a pod on this node: a Node's status changes too often to be
// worth a watch for that.
func (c *watchedCluster) Node(ctx context.Context, name string) (*corev1.Node, error) {
	return APICluster{Client: c.client}.Node(ctx, name)
}

// ServiceAccountExists is read with a GET, again only after this node's pod
// changed.
func (c *watchedCluster) ServiceAccountExists(namespace, name string) (bool, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	v, ok := c.accounts[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := APICluster{Client: c.client}.ServiceAccountExists(namespace, name)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.accounts[key] = v
	c.mu.Unlock()
	return v, nil
}
