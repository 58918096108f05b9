package status

import (
	"context"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// RolloutStates reads, for every Node the selector picks, its agent's Lease
// in leaseNamespace and the rollout state the agent publishes there, for
// report --rollout. The same two lists as NodeStates: nothing more to grant.
func RolloutStates(ctx context.Context, client kubernetes.Interface, selector, leaseNamespace string, resync time.Duration, now time.Time) ([]rollout.Observed, error) {
	nodes, err := ListNodes(ctx, client, selector)
	if err != nil {
		return nil, err
	}
	leases, err := listLeases(ctx, client, leaseNamespace)
	if err != nil {
		return nil, err
	}
	byNode := map[string]rollout.Observed{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if node, ok := strings.CutPrefix(l.Name, LeasePrefix); ok {
			byNode[node] = rollout.Observed{Node: node, Lease: true, Fresh: LeaseFresh(l, resync, now),
				Value: l.Annotations[rollout.StateAnnotation]}
		}
	}
	out := make([]rollout.Observed, 0, len(nodes))
	for i := range nodes {
		o, ok := byNode[nodes[i].Name]
		if !ok {
			o = rollout.Observed{Node: nodes[i].Name}
		}
		out = append(out, o)
	}
	return out, nil
}
