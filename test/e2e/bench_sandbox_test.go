package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
)

// BenchmarkSandboxWatchCost: what the agents' watches of sandbox failures
// cost the API server. Events have no watch cache, so each watch is an
// etcd watch over every event written, of any reason, decoded and matched
// against the field selector once per watch. With 0 and then 200 such
// watches open, 500 events of another reason are written, then one
// sandbox failure of another node that every watch must receive (so each
// has seen every event before it); the API server's CPU time over that,
// less the same with no watch, divided by events and watches, is the cost
// of one event written to one agent's watch.
func BenchmarkSandboxWatchCost(b *testing.B) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	e.bare = true
	pid, err := cp.APIServerPID()
	must(b, err)
	const written = 500
	cost := map[int]time.Duration{}
	for _, watches := range []int{0, 200} {
		ctx, cancel := context.WithCancel(e.ctx)
		var ws []watch.Interface
		for range watches {
			w, err := cp.Client.CoreV1().Events("").Watch(ctx, metav1.ListOptions{FieldSelector: sandbox.Selector})
			must(b, err)
			ws = append(ws, w)
		}
		events := cp.Client.CoreV1().Events(e.ns)
		cpu0 := cpuTime(b, pid)
		for i := range written {
			_, err := events.Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%d-%d", watches, i)},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: e.ns, Name: "p" + strconv.Itoa(i)},
				Reason:         "Scheduled", Message: "Successfully assigned to a node", Source: corev1.EventSource{Component: "default-scheduler"},
				FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1, Type: corev1.EventTypeNormal}, metav1.CreateOptions{})
			must(b, err)
		}
		_, err := events.Create(ctx, kubeletSandboxFailure(e.ns, fmt.Sprintf("sentinel-%d", watches), "another-node", time.Now()), metav1.CreateOptions{})
		must(b, err)
		for _, w := range ws {
			select {
			case ev := <-w.ResultChan():
				if got := ev.Object.(*corev1.Event); got.Reason != sandbox.Reason {
					b.Fatalf("a watch received %s", got.Reason)
				}
			case <-time.After(time.Minute):
				b.Fatal("a watch did not receive the sandbox failure")
			}
		}
		cost[watches] = cpuTime(b, pid) - cpu0
		for _, w := range ws {
			w.Stop()
		}
		cancel()
	}
	per := (cost[200] - cost[0]) / (200 * written)
	b.ReportMetric(float64(per.Nanoseconds())/1000, "µs/event/watch")
	fmt.Printf("sandbox watch: API server CPU for %d events of another reason: %v with no watch, %v with 200 (%.1f µs per event per watch)\n"+
		"sandbox watch: at 5000 nodes, %.0f ms of API server CPU per event written in the cluster; at 50 events/s, %.1f cores\n",
		written, cost[0].Round(time.Millisecond), cost[200].Round(time.Millisecond), float64(per.Nanoseconds())/1000,
		float64((per*5000).Microseconds())/1000, (per * 5000 * 50).Seconds())
}
