package plan

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
)

// apiCluster is the cluster read once for every node: each object is asked
// for once, and the pods of a DaemonSet in one list by its selector rather
// than a list per node.
type apiCluster struct {
	api    inputs.APICluster
	client kubernetes.Interface
	nodes  map[string]*corev1.Node

	daemonSets map[string]*appsv1.DaemonSet
	configMaps map[string]*corev1.ConfigMap
	accounts   map[string]bool
	// pods are each DaemonSet's pods by node.
	pods map[string]map[string][]*corev1.Pod
}

// NewAPICluster reads the cluster through client; nodes are the Nodes
// listed already.
func NewAPICluster(client kubernetes.Interface, nodes []corev1.Node) inputs.Cluster {
	c := &apiCluster{api: inputs.APICluster{Client: client}, client: client, nodes: map[string]*corev1.Node{},
		daemonSets: map[string]*appsv1.DaemonSet{}, configMaps: map[string]*corev1.ConfigMap{},
		accounts: map[string]bool{}, pods: map[string]map[string][]*corev1.Pod{}}
	for i := range nodes {
		c.nodes[nodes[i].Name] = &nodes[i]
	}
	return c
}

func (c *apiCluster) DaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	key := namespace + "/" + name
	if ds, ok := c.daemonSets[key]; ok {
		return ds, nil
	}
	ds, err := c.api.DaemonSet(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	c.daemonSets[key] = ds
	return ds, nil
}

func (c *apiCluster) NodePod(ctx context.Context, ds *appsv1.DaemonSet, node string) (*corev1.Pod, error) {
	key := ds.Namespace + "/" + ds.Name
	byNode, ok := c.pods[key]
	if !ok {
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("DaemonSet %s: selector: %w", key, err)
		}
		ctx, cancel := context.WithTimeout(ctx, inputs.APITimeout)
		defer cancel()
		list, err := c.client.CoreV1().Pods(ds.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, fmt.Errorf("list the pods of DaemonSet %s: %w", key, err)
		}
		byNode = map[string][]*corev1.Pod{}
		for i := range list.Items {
			p := &list.Items[i]
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
		c.pods[key] = byNode
	}
	return inputs.PodOf(ds, byNode[node]), nil
}

func (c *apiCluster) Node(ctx context.Context, name string) (*corev1.Node, error) {
	if n, ok := c.nodes[name]; ok {
		return n, nil
	}
	return c.api.Node(ctx, name)
}

func (c *apiCluster) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	key := namespace + "/" + name
	if cm, ok := c.configMaps[key]; ok {
		return cm, nil
	}
	cm, err := c.api.ConfigMap(namespace, name)
	if err != nil {
		return nil, err
	}
	c.configMaps[key] = cm
	return cm, nil
}

func (c *apiCluster) ServiceAccountExists(namespace, name string) (bool, error) {
	key := namespace + "/" + name
	if ok, known := c.accounts[key]; known {
		return ok, nil
	}
	ok, err := c.api.ServiceAccountExists(namespace, name)
	if err != nil {
		return false, err
	}
	c.accounts[key] = ok
	return ok, nil
}

// withProposed is a cluster where the proposed ConfigMap stands in for the
// one of its name. A manifest without a namespace is taken for the
// namespace the DaemonSet reads it in, as its configMapKeyRefs do.
type withProposed struct {
	inputs.Cluster
	cm *corev1.ConfigMap
}

func (w withProposed) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	if name == w.cm.Name && (w.cm.Namespace == "" || w.cm.Namespace == namespace) {
		cm := w.cm.DeepCopy()
		cm.Namespace = namespace
		return cm, nil
	}
	return w.Cluster.ConfigMap(namespace, name)
}
