package inputs

import (
	"context"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
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

// watchedCluster is source daemonset for the agent. It caches a handful of
// objects, never a namespace:
//
//   - this node's pods in the DaemonSet's namespace (a spec.nodeName field
//     selector), whose change is what a calico-node restart or rolling
//     update looks like;
//   - each ConfigMap the install-cni environment refers to, by name, added
//     as the pod starts to refer to it;
//   - the DaemonSet itself is read with a GET when the pod changes or there
//     is none: a watch would bring every status update of a cluster-wide
//     object (its ready counts change with every pod) to every node;
//   - whether a ServiceAccount exists, likewise read again only when the
//     pod changes.
type watchedCluster struct {
	client  kubernetes.Interface
	node    string
	trigger func(why string)
	start   func(cache.SharedIndexInformer) error // runs and syncs an informer

	mu         sync.Mutex
	pods       map[string]cache.SharedIndexInformer // by namespace
	configMaps map[string]cache.SharedIndexInformer // by namespace/name
	ds         map[string]*appsv1.DaemonSet         // by namespace/name, as last read
	dsPod      map[string]string                    // the pod resourceVersion each DaemonSet was read at
	accounts   map[string]bool
	accountsAt string
}

func newWatchedCluster(client kubernetes.Interface, node string, trigger func(string), start func(cache.SharedIndexInformer) error) *watchedCluster {
	return &watchedCluster{client: client, node: node, trigger: trigger, start: start,
		pods: map[string]cache.SharedIndexInformer{}, configMaps: map[string]cache.SharedIndexInformer{},
		ds: map[string]*appsv1.DaemonSet{}, dsPod: map[string]string{}, accounts: map[string]bool{}}
}

// DaemonSet returns the DaemonSet as last read; it is read again when this
// node's pod of it changed (or there is none), which is when a new spec can
// matter here.
func (c *watchedCluster) DaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	cached, seen := c.ds[key]
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
	inf, err := c.informer(c.pods, namespace, "calico-node pods on this node", func() cache.SharedIndexInformer {
		return coreinformers.NewFilteredPodInformer(c.client, namespace, 0, namespaceIndex(), func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.node).String()
		})
	})
	if err != nil {
		return nil, err
	}
	return corelisters.NewPodLister(inf.GetIndexer()), nil
}

// informer returns the informer under key in m, made, started and synced on
// first use. One that has not synced yet (the API server is away) is an
// error for this pass, and stays running for the next.
func (c *watchedCluster) informer(m map[string]cache.SharedIndexInformer, key, what string, mk func() cache.SharedIndexInformer) (cache.SharedIndexInformer, error) {
	c.mu.Lock()
	inf, ok := m[key]
	if !ok {
		inf = mk()
		m[key] = inf
	}
	c.mu.Unlock()
	if !ok {
		if _, err := inf.AddEventHandler(handlerFor(c.trigger, what)); err != nil {
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
	})
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
