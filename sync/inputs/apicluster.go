package inputs

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// APITimeout bounds each request a pass makes itself, so a server that
// accepts connections but does not answer cannot wedge the agent's loop.
var APITimeout = 10 * time.Second

// APICluster reads the cluster with direct requests: --once and drift.
type APICluster struct{ Client kubernetes.Interface }

// DaemonSet gets one DaemonSet.
func (c APICluster) DaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	ds, err := c.Client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get DaemonSet %s/%s: %w", namespace, name, err)
	}
	return ds, nil
}

// NodePod lists the pods on node in the DaemonSet's namespace (a field
// selector: a handful of pods) and picks the DaemonSet's.
func (c APICluster) NodePod(ctx context.Context, ds *appsv1.DaemonSet, node string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	list, err := c.Client.CoreV1().Pods(ds.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return nil, fmt.Errorf("list pods on node %s in %s: %w", node, ds.Namespace, err)
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return PodOf(ds, pods), nil
}

// Node gets the Node.
func (c APICluster) Node(ctx context.Context, name string) (*corev1.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Node %s: %w", name, err)
	}
	return n, nil
}

// ConfigMap gets one ConfigMap.
func (c APICluster) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), APITimeout)
	defer cancel()
	cm, err := c.Client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get ConfigMap %s/%s: %w", namespace, name, err)
	}
	return cm, nil
}

// ServiceAccountExists gets one ServiceAccount.
func (c APICluster) ServiceAccountExists(namespace, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), APITimeout)
	defer cancel()
	_, err := c.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return true, nil
}
