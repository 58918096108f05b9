package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
)

// NodeState is one row of report.
type NodeState struct {
	Name    string     `json:"name"`
	State   string     `json:"state"`
	Reason  string     `json:"reason"`
	Message string     `json:"message"`
	Since   *time.Time `json:"since"`
}

// stateStale is a node whose agent is gone: its condition is as old as the
// agent's last word.
const stateStale = "Stale"

// nodeStates reads the CalicoCNIConfigDrift condition of every Node the
// selector picks. The state is the condition's reason (a file state, or
// TokenRejected); a Node without the condition is Unknown; a Node whose
// agent's Lease is missing or older than twice the resync period is Stale,
// whatever its condition says. Problems sort first, most severe first, then
// by name.
func nodeStates(ctx context.Context, client kubernetes.Interface, selector string, resync time.Duration, now time.Time) ([]NodeState, error) {
	// Node objects are large (their images): list them a page at a time.
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
	leases, err := client.CoordinationV1().Leases(sync.LeaseNamespace()).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
	if err != nil {
		return nil, fmt.Errorf("list the agents' Leases in %s: %w", sync.LeaseNamespace(), err)
	}
	fresh := map[string]bool{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if node, ok := strings.CutPrefix(l.Name, sync.LeasePrefix); ok {
			fresh[node] = sync.LeaseFresh(l, resync, now)
		}
	}
	out := make([]NodeState, 0, len(nodes))
	for _, n := range nodes {
		row := NodeState{Name: n.Name, State: "Unknown"}
		for _, c := range n.Status.Conditions {
			if c.Type != sync.ConditionType {
				continue
			}
			row.State, row.Reason, row.Message = c.Reason, c.Reason, cniconf.Redact(c.Message)
			if c.Status == corev1.ConditionFalse {
				row.State = string(cniconf.InSync)
			}
			if !c.LastTransitionTime.IsZero() {
				t := c.LastTransitionTime.UTC()
				row.Since = &t
			}
			if !fresh[n.Name] {
				row.State = stateStale
				row.Message = "the agent's Lease is missing or older than twice the resync period: the agent is gone, and this condition may be out of date; " + row.Message
			}
		}
		out = append(out, row)
	}
	rank := func(s string) int {
		switch s {
		case string(cniconf.InSync):
			return 100
		case "Unknown":
			return 50
		case stateStale:
			return 40
		case sync.ReasonTokenRejected:
			return -1
		}
		return cniconf.State(s).Severity()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i].State), rank(out[j].State); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// runReport prints every node's state.
func runReport(ctx context.Context, o *Options, stdout io.Writer) (int, error) {
	cfg, err := restConfig(o)
	if err != nil {
		return exitError, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return exitError, err
	}
	if o.Stuck {
		return runStuck(ctx, o, client, stdout)
	}
	rows, err := nodeStates(ctx, client, o.Selector, o.ResyncPeriod, time.Now())
	if err != nil {
		return exitError, err
	}
	if o.Output == "json" {
		if err := printJSON(stdout, map[string]any{"nodes": rows}); err != nil {
			return exitError, err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "NODE\tSTATE\tREASON\tSINCE\tMESSAGE")
		for _, r := range rows {
			since := "-"
			if r.Since != nil {
				since = r.Since.Format(time.RFC3339)
			}
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, r.Reason, since, r.Message)
		}
		_ = tw.Flush()
	}
	for _, r := range rows {
		if r.State != string(cniconf.InSync) {
			return exitDrift, nil
		}
	}
	return exitOK, nil
}
