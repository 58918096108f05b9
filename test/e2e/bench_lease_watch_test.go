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
}

// leaseWatchCost measures leaseWatchCosts with the agents stopped: with
// no watch, then 200 plain watches, then 200 watch-lists of the agents'
// Leases (their label, one namespace) open, 500 renewals of 50 Leases and
// one more that every watch must receive; the CPU time over that, less the
// same with no watch, divided by the deliveries. A watch-list's initial
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
	// waits until every watch has received the last renewal.
	run := func(open int, list bool) (initial, renewing time.Duration, items int) {
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
		sentinel := fmt.Sprintf("sentinel-%d-%t", open, list)
		var synced, done sync.WaitGroup
		var missed atomic.Int32
		cpu0 := cpuTime(b, pid)
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
		if n := missed.Load(); n > 0 {
			b.Fatalf("%d of %d watches did not receive the last renewal", n, open)
		}
		return cpu1 - cpu0, cpu2 - cpu1, len(current.Items)
	}
	_, none, _ := run(0, false)
	openPlain, plain, _ := run(watches, false)
	openList, listed, items := run(watches, true)
	deliveries := time.Duration(watches * (renewals + 1))
	c := leaseWatchCosts{Plain: (plain - none) / deliveries, WatchList: (listed - none) / deliveries,
		Initial: (openList - openPlain) / time.Duration(watches*items)}
	fmt.Printf("rollout lease watch: API server CPU for %d renewals: %v with no watch, %v with %d plain watches (%.1f µs per renewal per watch), %v with %d watch-lists as the agents hold them (%.1f µs)\n",
		renewals+1, none.Round(time.Millisecond), plain.Round(time.Millisecond), watches, micros(c.Plain), listed.Round(time.Millisecond), watches, micros(c.WatchList))
	fmt.Printf("rollout lease watch: opening %d watch-lists of %d Leases: %v, %d plain watches: %v (%.1f µs per Lease sent in initial events)\n",
		watches, items, openList.Round(time.Millisecond), watches, openPlain.Round(time.Millisecond), micros(c.Initial))
	return c
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// reportLeaseWatch reports the idle window (an hour at the default
// periods): the requests, the Leases watch's events and bytes per agent;
// and the arithmetic at 1000 and 5000 nodes, where every agent's watch
// receives every agent's renewals, and the first change rolled out in
// waves opens a watch-list of every Lease on every node.
func reportLeaseWatch(b *testing.B, idle tally, nodes int, window, scale time.Duration, costs leaseWatchCosts) {
	wire := idle.Bytes["watch leases"] + idle.Bytes["watchlist leases"]
	plain := idle.Bytes["watchlist leases (decompressed)"]
	events := idle.Events["leases MODIFIED"] + idle.Events["leases ADDED"]
	bookmarks := idle.Events["leases BOOKMARK"]
	writes := idle.Requests["update leases (renewal)"] + idle.Requests["update leases (state)"]
	if events == 0 || writes == 0 {
		b.Fatalf("no Lease event or write in the idle window: events %d, writes %d", events, writes)
	}
	perLease := float64(writes) / float64(nodes)              // renewals of one Lease in an hour
	eventsPerAgent := float64(events) / float64(nodes)        // what one watch received in the hour
	wirePerEvent := float64(wire) / float64(events+bookmarks) // gzipped, each event alone
	plainPerEvent := float64(plain) / float64(events+bookmarks)
	fmt.Printf("rollout idle, requests per node per hour at the default periods (counted over %s, %d times shorter): %s\n", window, scale, idle.perNode(nodes))
	fmt.Printf("rollout idle, Leases watch per agent per hour: %.0f events (%d Leases renewed %.1f times each), %.0f bookmarks, %.1f KiB on the wire (%.1f KiB decompressed): %.0f bytes per event (%.0f decompressed)\n",
		eventsPerAgent, nodes, perLease, float64(bookmarks)/float64(nodes), float64(wire)/1024/float64(nodes), float64(plain)/1024/float64(nodes), wirePerEvent, plainPerEvent)
	b.ReportMetric(eventsPerAgent, "lease-events/agent/hour")
	b.ReportMetric(wirePerEvent, "bytes/lease-event")
	b.ReportMetric(micros(costs.WatchList), "µs/lease-event/watch")
	for _, n := range []float64{1000, 5000} {
		perAgent := perLease * n         // events one watch receives in an hour
		delivered := perAgent * n / 3600 // events the API servers send, per second, cluster-wide
		fmt.Printf("rollout at %.0f nodes: each agent's watch receives %.0f events an hour (%.1f MiB); the API servers send %.0f events a second (%.1f MiB/s) and spend %.2f cores on them\n",
			n, perAgent, perAgent*wirePerEvent/(1<<20), delivered, delivered*wirePerEvent/(1<<20), delivered*costs.WatchList.Seconds())
		fmt.Printf("rollout at %.0f nodes: the first change rolled out in waves opens %.0f watch-lists of %.0f Leases: %.2g Leases sent (%.1f GiB decompressed), %.0f s of API server CPU\n",
			n, n, n, n*n, n*n*plainPerEvent/(1<<30), n*n*costs.Initial.Seconds())
		if n == 5000 {
			b.ReportMetric(delivered, "lease-events-sent/s@5000")
		}
	}
}
