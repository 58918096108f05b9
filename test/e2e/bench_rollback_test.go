package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// badRevision is what benchBadRevision measured.
type badRevision struct {
	rolledBack time.Duration            // the failure's event created → the canary's file put back
	closed     time.Duration            // → a watch saw the canary's Lease say rolledBack
	halted     map[string]time.Duration // → a watch saw each later-wave node's Lease say halted
	all        tally                    // every agent's requests, the ConfigMap update until the last wave's opening has passed
	canary     tally                    // the canary's share of them
	later      tally                    // the later waves' share
	after      tally                    // every agent's, from the last halt until the end
	afterSpan  time.Duration
}

// benchBadRevision rolls out a change that the canary applies and a pod
// on it then fails its sandbox (the event written as the kubelet writes
// it, kubeletSandboxFailure) during the canary's soak. It times the
// canary's rollback (its file's modification time) and each later-wave
// node's halt (a watch of the Leases, from the benchmark's own client),
// checks that no later-wave node wrote the change up to past its last
// wave's opening, and tallies the agents' requests and Lease events over
// it. good is the revision every node applied last, with MTU goodMTU.
func benchBadRevision(b *testing.B, r *rolloutNodes, proxies map[string]*tallyProxy, good, goodMTU string) badRevision {
	e := r.e
	const mtu = "1400"
	want := `"mtu": ` + mtu + `,`
	before := map[string]string{}
	for n := range r.waves {
		before[n] = r.conf(n)
		if !strings.Contains(before[n], `"mtu": `+goodMTU+`,`) {
			b.Fatalf("%s does not hold the last good change (MTU %s):\n%s", n, goodMTU, before[n])
		}
	}
	leases := e.client.CoordinationV1().Leases(e.ns)
	list, err := leases.List(e.ctx, metav1.ListOptions{LabelSelector: rollout.LeaseSelector})
	must(b, err)
	w, err := leases.Watch(e.ctx, metav1.ListOptions{LabelSelector: rollout.LeaseSelector, ResourceVersion: list.ResourceVersion})
	must(b, err)
	defer w.Stop()

	out := badRevision{halted: map[string]time.Duration{}}
	begin := snapshots(proxies)
	start := r.updateConfigMap(mtu, "")
	e.waitFile(r.nets[r.canary], "10-calico.conflist", "the canary applied the bad change", func(s string) bool { return strings.Contains(s, want) })
	applied := r.waitStates("the canary published Applied", func(n string, s rollout.State) error {
		if n == r.canary && (s.Phase != rollout.Applied || s.Revision == good) {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	rev := applied[r.canary].Revision
	failedAt := time.Now()
	_, err = e.client.CoreV1().Events(e.ns).Create(e.ctx, kubeletSandboxFailure(e.ns, "web-0", r.canary, failedAt), metav1.CreateOptions{})
	must(b, err)

	seen := map[string]time.Duration{}
	deadline := time.After(benchWaves*benchInterval + 30*time.Second)
	for len(seen) < len(r.waves) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("the benchmark's Leases watch ended")
			}
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok {
				continue
			}
			node := strings.TrimPrefix(l.Name, rollout.LeasePrefix)
			if _, ours := r.waves[node]; !ours {
				continue
			}
			s, ok, err := rollout.Decode(l.Annotations[rollout.StateAnnotation])
			if err != nil || !ok || s.Revision != rev {
				continue
			}
			phase := rollout.Halted
			if node == r.canary {
				phase = rollout.RolledBack
				if s.Phase == phase && l.Labels[rollout.ClosedLabel] != rollout.ClosedValue(s) {
					b.Errorf("the canary's Lease says rolledBack without %s=%s: labels %v", rollout.ClosedLabel, rollout.ClosedValue(s), l.Labels)
				}
			}
			if _, dup := seen[node]; s.Phase == phase && !dup {
				seen[node] = time.Since(failedAt)
			}
		case <-deadline:
			b.Fatalf("the canary rolled back and the later waves halted: not within %s; seen %v", benchWaves*benchInterval+30*time.Second, seen)
		}
	}
	last := snapshots(proxies)
	lastAt := time.Now()
	e.waitFile(r.nets[r.canary], "10-calico.conflist", "the canary put its conflist back", func(s string) bool { return s == before[r.canary] })
	fi, err := os.Stat(filepath.Join(r.nets[r.canary], "10-calico.conflist"))
	must(b, err)
	out.rolledBack = fi.ModTime().Sub(failedAt)
	out.closed = seen[r.canary]
	for n, d := range seen {
		if n != r.canary {
			out.halted[n] = d
		}
	}

	// Past the opening of the last wave, and long enough for the
	// canary's Lease, labelled, to be renewed a few times: no node holds
	// the bad change.
	end := start.Add(benchWaves*benchInterval + 2*time.Second)
	if atLeast := lastAt.Add(30 * time.Second); end.Before(atLeast) {
		end = atLeast
	}
	e.eventually(time.Until(end)+10*time.Second, "the last wave's opening has passed", func() error {
		for n := range r.waves {
			if c := r.conf(n); c != before[n] {
				b.Fatalf("%s (wave %d) holds\n%s\nafter the rollback, want its file as it was", n, r.waves[n], c)
			}
		}
		if time.Now().Before(end) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for n := range r.waves {
		s, err := r.state(n)
		if phase := map[bool]rollout.Phase{true: rollout.RolledBack, false: rollout.Halted}[n == r.canary]; err != nil || s.Revision != rev || s.Phase != phase {
			b.Errorf("%s: state %+v %v at the end, want %s of %s", n, s, err, phase, rev)
		}
	}
	out.afterSpan = time.Since(lastAt)
	out.all, out.canary, out.later, out.after = newTally(), newTally(), newTally(), newTally()
	for n, p := range proxies {
		now := p.Snapshot()
		spent := now.minus(begin[n])
		out.all.add(spent)
		if n == r.canary {
			out.canary.add(spent)
		} else {
			out.later.add(spent)
		}
		out.after.add(now.minus(last[n]))
	}
	return out
}

// report prints the bad revision's timings, requests and Lease events:
// per node, and per agent per hour at the default periods (the agents'
// periods are scale times shorter).
func (o badRevision) report(b *testing.B, nodes int, scale time.Duration, costs leaseWatchCosts) {
	halted := make([]time.Duration, 0, len(o.halted))
	for _, d := range o.halted {
		halted = append(halted, d)
	}
	fmt.Printf("rollout bad revision: from the sandbox failure's event created to the canary's file put back: %.0f ms; to its Lease seen saying rolledBack: %.0f ms; to each later-wave node's Lease seen saying halted (%d nodes): p50 %.0f ms, max %.0f ms\n",
		ms(o.rolledBack), ms(o.closed), len(halted), quantile(halted, 0.5), quantile(halted, 1))
	b.ReportMetric(ms(o.rolledBack), "rollback-ms")
	b.ReportMetric(quantile(halted, 1), "halted-max-ms")
	fmt.Printf("rollout bad revision, requests per node (all %d): %s\n", nodes, o.all.perNode(nodes))
	fmt.Printf("rollout bad revision, the canary's requests: %s\n", o.canary.perNode(1))
	fmt.Printf("rollout bad revision, requests per later-wave node: %s\n", o.later.perNode(nodes-1))
	fmt.Printf("rollout bad revision, the canary's events watch (its soak): %s\n", eventsWatch(o.canary))
	fmt.Printf("rollout bad revision, Lease events per agent's watch: ADDED %s, MODIFIED %s, DELETED %s, BOOKMARK %s; %.0f bytes on the wire per agent (%.0f decompressed)\n",
		perNodeCount(o.all.Events["leases ADDED"], nodes), perNodeCount(o.all.Events["leases MODIFIED"], nodes), perNodeCount(o.all.Events["leases DELETED"], nodes),
		perNodeCount(o.all.Events["leases BOOKMARK"], nodes), float64(o.all.Bytes["watch leases"]+o.all.Bytes["watchlist leases"])/float64(nodes),
		float64(o.all.Bytes["watchlist leases (decompressed)"])/float64(nodes))
	after := float64(leaseEvents(o.after)) / float64(nodes)
	perHour := after * float64(time.Hour) / float64(o.afterSpan*scale)
	fmt.Printf("rollout bad revision, after the last halt, over %s (%s at the default periods), the canary's Lease labelled: %.2f Lease events per agent's watch, %.1f an hour at the default periods; Lease writes per node: %s\n",
		o.afterSpan.Round(time.Second), (o.afterSpan * scale).Round(time.Minute), after, perHour, leaseWrites(o.after, nodes))
	b.ReportMetric(perHour, "lease-events/agent/hour-after-rollback")
	b.ReportMetric(float64(o.all.Requests["list events"]+o.all.Requests["watch events"]+o.all.Requests["watchlist events"]), "events-watch-requests/bad-revision")
	for _, n := range []float64{200, 1000, 5000} {
		fmt.Printf("rollout at %.0f nodes, a rollback: %.0f Lease events delivered when the label is set (%.0f core-ms at %.1f µs each), then %.0f an hour (%.1f core-seconds an hour) while the rolled-back Lease is renewed at the rate measured\n",
			n, n, n*micros(costs.Plain)/1000, micros(costs.Plain), perHour*n, perHour*n*costs.Plain.Seconds())
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// eventsWatch is the events informer's requests and what they brought.
func eventsWatch(t tally) string {
	var parts []string
	for _, verb := range []string{"list", "watchlist", "watch"} {
		if k := t.Requests[verb+" events"]; k > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%.1f KiB)", verb, k, float64(t.Bytes[verb+" events"])/1024))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	parts = append(parts, fmt.Sprintf("watch events ADDED %d, MODIFIED %d, BOOKMARK %d", t.Events["events ADDED"], t.Events["events MODIFIED"], t.Events["events BOOKMARK"]))
	return strings.Join(parts, ", ")
}

// leaseWrites are a tally's Lease writes per node, renewals and states.
func leaseWrites(t tally, nodes int) string {
	return fmt.Sprintf("renewals %s, state %s", perNodeCount(t.Requests["update leases (renewal)"], nodes), perNodeCount(t.Requests["update leases (state)"]+t.Requests["create leases (state)"], nodes))
}
