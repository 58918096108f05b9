package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// runReport prints every node's state. With no node to judge it says so on
// stderr, as kubectl's "No resources found", and exits 0 as kubectl does (no
// node is out of sync): the message on stderr is what tells a selector that
// matches nothing (a typo in -l, the wrong --context) from a healthy cluster,
// and a script counts the nodes in -o json.
func runReport(ctx context.Context, o *Options, stdout, stderr io.Writer) (int, error) {
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
	if o.RolloutReport {
		return runRolloutReport(ctx, o, client, stdout, stderr)
	}
	rows, err := status.NodeStates(ctx, client, o.Selector, o.LeaseNamespace, o.ResyncPeriod, time.Now())
	if err != nil {
		return exitError, err
	}
	if len(rows) == 0 {
		_, _ = fmt.Fprintf(stderr, "No nodes found (selector %q)\n", o.Selector)
	}
	if o.Output == "json" {
		if err := printJSON(stdout, map[string]any{"nodes": rows}); err != nil {
			return exitError, err
		}
	} else if len(rows) > 0 {
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
	if len(rows) == 0 {
		return exitOK, nil
	}
	for _, r := range rows {
		if r.State != string(cniconf.InSync) {
			return exitDrift, nil
		}
	}
	return exitOK, nil
}
