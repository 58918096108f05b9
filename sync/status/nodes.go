package status

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"
)

// NodeStates reads the condition of every Node the selector picks, with
// its agent's Lease in leaseNamespace: a Node whose agent's Lease is
// missing or was not renewed within its duration is Stale (LeaseFresh,
// NodeStateOf; resync is the fallback for a Lease without a duration).
// Problems sort first, most severe first, then by name.
func NodeStates(ctx context.Context, client kubernetes.Interface, selector, leaseNamespace string, resync time.Duration, now time.Time) ([]NodeState, error) {
	nodes, err := ListNodes(ctx, client, selector)
	if err != nil {
		return nil, err
	}
	leases, err := listLeases(ctx, client, leaseNamespace)
	if err != nil {
		return nil, err
	}
	fresh := map[string]bool{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if node, ok := strings.CutPrefix(l.Name, LeasePrefix); ok {
			fresh[node] = LeaseFresh(l, resync, now)
		}
	}
	out := make([]NodeState, 0, len(nodes))
	for i := range nodes {
		out = append(out, NodeStateOf(&nodes[i], fresh[nodes[i].Name]))
	}
	SortNodeStates(out)
	return out, nil
}

// ListNodes lists the Nodes the selector picks. Node objects are large
// (their images): they are listed a page at a time.
func ListNodes(ctx context.Context, client kubernetes.Interface, selector string) ([]corev1.Node, error) {
	var nodes []corev1.Node
	err := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return client.CoreV1().Nodes().List(ctx, opts)
	}).EachListItem(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 500}, func(obj runtime.Object) error {
		nodes = append(nodes, *obj.(*corev1.Node))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list Nodes: %w", err)
	}
	return nodes, nil
}

// listLeases lists the agents' Leases.
func listLeases(ctx context.Context, client kubernetes.Interface, namespace string) (*coordinationv1.LeaseList, error) {
	leases, err := client.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
	if err != nil {
		return nil, fmt.Errorf("list the agents' Leases in %s (--lease-namespace): %w", namespace, err)
	}
	return leases, nil
}
