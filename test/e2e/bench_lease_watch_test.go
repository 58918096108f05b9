package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// leaseWatchCosts is the API server's CPU time for the gate's watch of
// the agents' Leases: per Lease renewal delivered to one watch, as a plain
// watch and as the agents' informers hold it (a watch-list, whose stream
// the API server gzips flush by flush); and per Lease sent in a
// watch-list's initial events.
type leaseWatchCosts struct {
	Plain, WatchList, Initial time.Duration
	// Offered is per Lease update per watch whose label selector it does
	// not match, as the gate's is for every Lease but a rolled-back
	// node's: the watch cache still hands each update to each watch of
	// the namespace, which matches it and drops it.
	Offered time.Duration
}

// leaseWatchCost measures leaseWatchCosts with the agents stopped: with
// no watch, then 200 plain watches, then 200 watch-lists of the agents'
// Leases (their label, one namespace) open, then 200 plain watches that
// also ask for rollout.ClosedLabel, which none of these Leases carries;
// 500 renewals of 50 Leases and one more that every watch must receive (a
// witness's, for the unmatched watches); the CPU time over that, less the
// same with no watch, divided by the deliveries (the offers). A watch-list's initial
// events are timed from its opening to its last watch's initial-events-end
// bookmark, less the same for plain watches, divided by the Leases sent.
func leaseWatchCost(b *testing.B, e *env) leaseWatchCosts {
	pid, err := cp.APIServerPID()
	must(b, err)
	const count, renewals, watches = 50, 500, 200
	leases := cp.Client.CoordinationV1().Leases(e.ns)
	objs := make([]*coordinationv1.Lease, count)
	for i := range objs {
		holder, secs, now := "bench", int32(600), metav1.NewMicroTime(time.Now())
		objs[i], err = leases.Create(e.ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%scost-%d", rollout.LeasePrefix, i), Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now}}, metav1.CreateOptions{})
		must(b, err)
	}
	renew := func(i int, holder string) {
		l := objs[i].DeepCopy()
		now := metav1.NewMicroTime(time.Now())
		l.Spec.RenewTime, l.Spec.HolderIdentity = &now, &holder
		objs[i], err = leases.Update(e.ctx, l, metav1.UpdateOptions{})
		must(b, err)
	}
	// run opens the watches, waits for their initial events, renews, and
	// waits until every watch has received the last renewal. With an
	// unmatched selector the watches (plain) receive nothing: one more
	// plain watch of the agents' label, the witness, receives the last
	// renewal, after the watch cache has offered it to every watch.
	run := func(open int, list, unmatched bool) (initial, renewing time.Duration, items int) {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
		defer cancel()
		current, err := leases.List(ctx, metav1.ListOptions{LabelSelector: rollout.LeaseSelector})
		must(b, err)
		opts := metav1.ListOptions{LabelSelector: rollout.LeaseSelector, ResourceVersion: current.ResourceVersion}
		if list {
			yes := true
			opts = metav1.ListOptions{LabelSelector: rollout.LeaseSelector, SendInitialEvents: &yes,
				ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true}
		}
		sentinel := fmt.Sprintf("sentinel-%d-%t-%t", open, list, unmatched)
		var synced, done, idle sync.WaitGroup
		var missed, unexpected atomic.Int32
		stop := make(chan struct{})
		cpu0 := cpuTime(b, pid)
		if unmatched {
			// The agents' label and the gate's, which no Lease here
			// carries.
			o := opts
			o.LabelSelector = rollout.LeaseSelector + "," + rollout.ClosedLabel
			for range open {
				w, err := leases.Watch(ctx, o)
				must(b, err)
				idle.Go(func() {
					defer w.Stop()
					for {
						select {
						case ev, ok := <-w.ResultChan():
							if !ok {
								return
							}
							if _, ok := ev.Object.(*coordinationv1.Lease); ok {
								unexpected.Add(1)
							}
						case <-stop:
							return
						}
					}
				})
			}
			open = 1 // the witness
		}
		for range open {
			w, err := leases.Watch(ctx, opts)
			must(b, err)
			synced.Add(1)
			done.Go(func() {
				defer w.Stop()
				insync := false
				markSynced := func() {
					if !insync {
						insync = true
						synced.Done()
					}
				}
				defer markSynced()
				if !list {
					markSynced()
				}
				for {
					select {
					case ev, ok := <-w.ResultChan():
						if !ok {
							missed.Add(1)
							return
						}
						l, ok := ev.Object.(*coordinationv1.Lease)
						if !ok {
							continue
						}
						if ev.Type == watch.Bookmark && l.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
							markSynced()
						}
						if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == sentinel {
							return
						}
					case <-ctx.Done():
						missed.Add(1)
						return
					}
				}
			})
		}
		synced.Wait()
		cpu1 := cpuTime(b, pid)
		for i := range renewals {
			renew(i%count, "bench")
		}
		renew(count-1, sentinel)
		done.Wait()
		cpu2 := cpuTime(b, pid)
		close(stop)
		idle.Wait()
		if n := missed.Load(); n > 0 {
			b.Fatalf("%d of %d watches did not receive the last renewal", n, open)
		}
		if n := unexpected.Load(); n > 0 {
			b.Fatalf("the watches of an unmatched selector received %d Leases", n)
		}
		return cpu1 - cpu0, cpu2 - cpu1, len(current.Items)
	}
	_, none, _ := run(0, false, false)
	openPlain, plain, _ := run(watches, false, false)
	openList, listed, items := run(watches, true, false)
	_, offered, _ := run(watches, false, true)
	deliveries := time.Duration(watches * (renewals + 1))
	c := leaseWatchCosts{Plain: (plain - none) / deliveries, WatchList: (listed - none) / deliveries,
		Initial: (openList - openPlain) / time.Duration(watches*items)}
	// Less the witness's deliveries.
	c.Offered = (offered - none - c.Plain*(renewals+1)) / deliveries
	fmt.Printf("rollout lease watch: API server CPU for %d renewals: %v with no watch, %v with %d plain watches (%.1f µs per renewal per watch), %v with %d watch-lists as the agents hold them (%.1f µs)\n",
		renewals+1, none.Round(time.Millisecond), plain.Round(time.Millisecond), watches, micros(c.Plain), listed.Round(time.Millisecond), watches, micros(c.WatchList))
	fmt.Printf("rollout lease watch: opening %d watch-lists of %d Leases: %v, %d plain watches: %v (%.1f µs per Lease sent in initial events)\n",
		watches, items, openList.Round(time.Millisecond), watches, openPlain.Round(time.Millisecond), micros(c.Initial))
	fmt.Printf("rollout lease watch: API server CPU for %d renewals with %d plain watches whose selector matches none of them (%s,%s) and one that does: %v (%.2f µs per renewal per unmatched watch)\n",
		renewals+1, watches, rollout.LeaseSelector, rollout.ClosedLabel, offered.Round(time.Millisecond), micros(c.Offered))
	return c
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// reportLeaseWatch reports the idle window (an hour at the default
// periods): the requests, and the events and bytes of the gate's Leases
// watch per agent, which selects only the Leases of nodes that rolled a
// revision back: none here. And the arithmetic at 200, 1000 and 5000
// nodes: what the watch cache still does for every Lease update, match it
// against every such watch's selector.
func reportLeaseWatch(b *testing.B, idle tally, nodes int, window, scale time.Duration, costs leaseWatchCosts) {
	wire := idle.Bytes["watch leases"] + idle.Bytes["watchlist leases"]
	events := leaseEvents(idle)
	bookmarks := idle.Events["leases BOOKMARK"]
	writes := idle.Requests["update leases (renewal)"] + idle.Requests["update leases (state)"]
	if writes == 0 {
		b.Fatalf("no Lease write in the idle window")
	}
	if events > 0 {
		b.Errorf("the gates' Lease watches received %d Lease events in the idle window, want none: no Lease carries %s", events, rollout.ClosedLabel)
	}
	perLease := float64(writes) / float64(nodes)       // writes of one Lease in an hour
	eventsPerAgent := float64(events) / float64(nodes) // what one watch received in the hour
	fmt.Printf("rollout idle, requests per node per hour at the default periods (counted over %s, %d times shorter): %s\n", window, scale, idle.perNode(nodes))
	fmt.Printf("rollout idle, Leases watch per agent per hour: %.2f Lease events, %.1f bookmarks, %.2f KiB on the wire, while %d Leases were written %.1f times each\n",
		eventsPerAgent, float64(bookmarks)/float64(nodes), float64(wire)/1024/float64(nodes), nodes, perLease)
	b.ReportMetric(eventsPerAgent, "lease-events/agent/hour")
	b.ReportMetric(micros(costs.WatchList), "µs/lease-event/watch")
	b.ReportMetric(float64(costs.Offered.Nanoseconds()), "ns/lease-update/unmatched-watch")
	for _, n := range []float64{200, 1000, 5000} {
		offered := perLease * n * n / 3600 // Lease updates matched against the watches' selector, per second
		fmt.Printf("rollout at %.0f nodes, idle: each agent's watch receives %.2f Lease events an hour, the API servers send %.2f a second; the watch cache matches %.0f Lease updates a second against the watches' selector: %.3f cores at %.1f µs each\n",
			n, eventsPerAgent, eventsPerAgent*n/3600, offered, offered*costs.Offered.Seconds(), micros(costs.Offered))
	}
}
