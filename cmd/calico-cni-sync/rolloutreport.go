package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// rolloutListed bounds the nodes report --rollout lists per phase in text:
// at thousands of nodes the counts say it, and -o json lists them all.
const rolloutListed = 10

// runRolloutReport prints report --rollout: per revision, newest first, where
// the nodes stand, and the nodes whose place is not known. Exit 0 when
// nothing rolls out or every node applied the newest revision.
func runRolloutReport(ctx context.Context, o *Options, client kubernetes.Interface, stdout, stderr io.Writer) (int, error) {
	nodes, err := status.RolloutStates(ctx, client, o.Selector, o.LeaseNamespace, o.ResyncPeriod, time.Now())
	if err != nil {
		return exitError, err
	}
	if len(nodes) == 0 {
		_, _ = fmt.Fprintf(stderr, "No nodes found (selector %q)\n", o.Selector)
	}
	s := rollout.Summarize(nodes)
	if o.Output == "json" {
		if err := printJSON(stdout, s); err != nil {
			return exitError, err
		}
	} else {
		printRollout(stdout, s)
	}
	if s.Settled() {
		return exitOK, nil
	}
	return exitDrift, nil
}

// printRollout is report --rollout's text: one block per revision, then the
// nodes with no state.
func printRollout(w io.Writer, s rollout.Summary) {
	if len(s.Revisions) == 0 && len(s.NoState) == s.Nodes && s.Nodes > 0 {
		_, _ = fmt.Fprintf(w, "no rollout: none of the %d nodes publishes a rollout state\n", s.Nodes)
	}
	for _, r := range s.Revisions {
		head := "revision " + r.Revision
		if r.Revision == s.Newest {
			head += " (newest)"
		}
		total := r.Nodes.Applied + r.Nodes.Waiting + r.Nodes.Paused + r.Nodes.Halted + r.Nodes.RolledBack
		_, _ = fmt.Fprintf(w, "%s, first seen %s: %s; %d applied, %d waiting, %d paused, %d halted, %d rolled back\n",
			head, r.FirstSeen.UTC().Format(time.RFC3339), plural(total, "node"),
			r.Nodes.Applied, r.Nodes.Waiting, r.Nodes.Paused, r.Nodes.Halted, r.Nodes.RolledBack)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, phase := range []struct {
			name  string
			nodes []rollout.NodeState
		}{{"halted", r.Halted}, {"rolledBack", r.RolledBack}, {"paused", r.Paused}, {"waiting", r.Waiting}} {
			for i, n := range phase.nodes {
				if i == rolloutListed {
					_, _ = fmt.Fprintf(tw, "  %s\t... and %d more\t\t\t\n", phase.name, len(phase.nodes)-rolloutListed)
					break
				}
				_, _ = fmt.Fprintf(tw, "  %s\t%s\twave %d\tsince %s\t%s\n", phase.name, n.Node, n.Wave, n.Since.UTC().Format(time.RFC3339), oneLine(n.Reason))
			}
		}
		_ = tw.Flush()
	}
	if len(s.NoState) == 0 || len(s.Revisions) == 0 && len(s.NoState) == s.Nodes && !anyLast(s.NoState) {
		return
	}
	_, _ = fmt.Fprintf(w, "no rollout state: %s\n", plural(len(s.NoState), "node"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	shown := map[string]int{}
	more := map[string]int{}
	for _, u := range s.NoState {
		if shown[u.Why] == rolloutListed {
			more[u.Why]++
			continue
		}
		shown[u.Why]++
		msg := u.Message
		if u.Last != nil {
			msg += fmt.Sprintf(" (last said: %s %s, wave %d, since %s)", u.Last.Phase, u.Last.Revision, u.Last.Wave, u.Last.Since.UTC().Format(time.RFC3339))
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\n", u.Why, u.Node, oneLine(msg))
	}
	for _, why := range []string{rollout.NoLease, rollout.NoAnnotation, rollout.StaleLease, rollout.UnreadableAnn} {
		if more[why] > 0 {
			_, _ = fmt.Fprintf(tw, "  %s\t... and %d more\t\n", why, more[why])
		}
	}
	_ = tw.Flush()
}

func anyLast(us []rollout.Unknown) bool {
	for _, u := range us {
		if u.Last != nil {
			return true
		}
	}
	return false
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// oneLine keeps a reason on its row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
