package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// The rollout the benchmark plays: a canary by label and three waves of
// eleven other nodes, twelve agents on this machine's two cores, the waves
// 10 s apart (the default interval is 10 minutes: 60 times shorter; long
// enough, on a loaded machine, for the canary to roll a bad revision back
// before wave 1 opens), two good changes one after the other, then a bad
// one.
const (
	benchWaves    = 3
	benchInterval = 10 * time.Second
	benchRollouts = 2
)

// benchWaveSizes is how many nodes each wave after the canary holds.
var benchWaveSizes = map[int]int{1: 4, 2: 4, 3: 3}

// BenchmarkRolloutWaves: the pace and the cost of a ConfigMap change rolled
// out in waves. Each agent runs with its own Node, CNI directory and
// tallying proxy (tallyProxy), with --rollout waves and the periods of
// BenchmarkIdleAgent (-idle-scale times shorter than the defaults).
//
//   - Pace: per wave, each node's lag from the wave's opening (the start,
//     rollout.StartOf the ConfigMap, plus wave × interval) to its file's
//     write (its modification time).
//   - The agents' requests during each rollout (the ConfigMap update until
//     every node published Applied and said InSync again), and over an idle
//     window after it that holds an hour of the default periods; the
//     events the gate's Leases watch receives (only the Leases of nodes
//     that rolled a revision back: none, while every change is good).
//   - A bad revision (benchBadRevision): the canary's rollback on a
//     sandbox failure in its soak and the later waves' halt, their times
//     and requests, and the Lease events the rollback delivers.
//   - The API server's CPU per Lease update delivered to one such watch,
//     and per Lease update offered to a watch whose selector it does not
//     match (leaseWatchCost), with the agents stopped.
func BenchmarkRolloutWaves(b *testing.B) {
	scale := time.Duration(*idleScale)
	resync, check, window := 5*time.Minute/scale, 10*time.Minute/scale, time.Hour/scale
	e := newEnv(b, "calico-config-v3.32.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	b.Cleanup(cancel)
	e.ctx = ctx
	r, proxies := startBenchRollout(b, e, resync, check)
	nodes := len(r.waves)
	rev := r.waitStates("every node at the first revision", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Applied {
			return fmt.Errorf("phase %s", s.Phase)
		}
		return nil
	})[r.canary].Revision
	startup := sumTallies(proxies)
	if reads := startup.Requests["list leases"] + startup.Requests["watch leases"] + startup.Requests["watchlist leases"]; reads > 0 {
		b.Errorf("%d lists or watches of Leases before any change was rolled out in waves", reads)
	}
	fmt.Printf("rollout start-up, requests per node: %s\n", startup.perNode(nodes))

	lags := map[int][]time.Duration{} // per wave, every node of every rollout
	var mtu string
	done := map[int][]time.Duration{} // per wave, its last node, per rollout
	var canary []time.Duration        // the update sent → the canary's file
	first, later := newTally(), newTally()
	b.ResetTimer()
	for i := range benchRollouts {
		mtu = strconv.Itoa(1440 - 10*i)
		want := `"mtu": ` + mtu + `,`
		before := sumTallies(proxies)
		sent := time.Now()
		start := r.updateConfigMap(mtu, "")
		e.eventually(benchWaves*benchInterval+time.Minute, "every node wrote MTU "+mtu, func() error {
			for n := range r.waves {
				if !strings.Contains(r.conf(n), want) {
					return errorf("%s has not", n)
				}
			}
			return nil
		})
		states := r.waitStates("every node published Applied", func(_ string, s rollout.State) error {
			if s.Phase != rollout.Applied || s.Revision == rev {
				return fmt.Errorf("state %+v", s)
			}
			return nil
		})
		for n := range r.waves {
			e.waitCondition(n, corev1.ConditionFalse, "InSync")
		}
		spent := sumTallies(proxies).minus(before)
		if i == 0 {
			first.add(spent)
		} else {
			later.add(spent)
		}
		last := map[int]time.Duration{}
		for n, w := range r.waves {
			fi, err := os.Stat(filepath.Join(r.nets[n], "10-calico.conflist"))
			must(b, err)
			lag := fi.ModTime().Sub(start.Add(time.Duration(w) * benchInterval))
			if lag < 0 {
				b.Errorf("%s (wave %d) wrote %s before its wave opened", n, w, -lag)
			}
			lags[w] = append(lags[w], lag)
			last[w] = max(last[w], lag)
			if w == 0 {
				canary = append(canary, fi.ModTime().Sub(sent))
			}
		}
		for w, l := range last {
			done[w] = append(done[w], l)
		}
		rev = states[r.canary].Revision
	}
	b.StopTimer()

	// Idle: a window of an hour at the default periods, the Leases
	// watch open.
	idle0 := snapshots(proxies)
	select {
	case <-time.After(window):
	case <-e.ctx.Done():
		b.Fatal(e.ctx.Err())
	}
	idle := newTally()
	for n, p := range proxies {
		idle.add(p.Snapshot().minus(idle0[n]))
	}
	bad := benchBadRevision(b, r, proxies, rev, mtu)
	for _, a := range r.agents {
		a.stop()
	}
	costs := leaseWatchCost(b, e)

	for w := 0; w <= benchWaves; w++ {
		name := fmt.Sprintf("wave%d-lag", w)
		b.ReportMetric(quantile(lags[w], 0.5), name+"-p50-ms")
		b.ReportMetric(quantile(lags[w], 1), name+"-max-ms")
		fmt.Printf("rollout wave %d (%d nodes): lag from the opening to each node's write, %d samples: p50 %.0f ms, max %.0f ms; to the wave's last node, per rollout: p50 %.0f ms, max %.0f ms\n",
			w, len(lags[w])/benchRollouts, len(lags[w]), quantile(lags[w], 0.5), quantile(lags[w], 1), quantile(done[w], 0.5), quantile(done[w], 1))
	}
	fmt.Printf("rollout canary: from the update sent to the canary's write: p50 %.0f ms, max %.0f ms (the opening is the update's time in whole seconds)\n",
		quantile(canary, 0.5), quantile(canary, 1))
	fmt.Printf("rollout first change, requests per node: %s\n", first.perNode(nodes))
	fmt.Printf("rollout each later change, requests per node: %s\n", later.perNode(nodes*(benchRollouts-1)))
	fmt.Printf("rollout first change, Leases read per node: %s\n", leaseReads(first, nodes))
	fmt.Printf("rollout each later change, Leases read per node: %s\n", leaseReads(later, nodes*(benchRollouts-1)))
	b.ReportMetric(float64(gateReads(first)+gateWrites(first))/float64(nodes), "gate-requests/node/first-change")
	b.ReportMetric(float64(gateReads(later)+gateWrites(later))/float64(nodes*(benchRollouts-1)), "gate-requests/node/later-change")
	if ev := leaseEvents(first) + leaseEvents(later); ev > 0 {
		b.Errorf("the gates' Lease watches received %d Lease events during the good changes, want none: no Lease carries %s", ev, rollout.ClosedLabel)
	}
	reportLeaseWatch(b, idle, nodes, window, scale, costs)
	bad.report(b, nodes, scale, costs)
}

// leaseEvents are the Lease events (not bookmarks) a tally's watches
// received.
func leaseEvents(t tally) int {
	return t.Events["leases ADDED"] + t.Events["leases MODIFIED"] + t.Events["leases DELETED"]
}

// startBenchRollout labels the env's node a canary, adds the nodes of
// benchWaveSizes (the names whose hash puts them in each wave), and starts
// an agent on each, each through a tallyProxy of its own, and waits until
// every node is InSync.
func startBenchRollout(b *testing.B, e *env, resync, check time.Duration) (*rolloutNodes, map[string]*tallyProxy) {
	sel, err := labels.Parse(canaryLabel + "=true")
	must(b, err)
	plan := rollout.Plan{CanarySelector: sel, Waves: benchWaves, Interval: benchInterval}
	r := &rolloutNodes{e: e, canary: e.node, waves: map[string]int{e.node: 0}, nets: map[string]string{}, agents: map[string]*agent{}}
	node, err := e.client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
	must(b, err)
	node.Labels[canaryLabel] = "true"
	_, err = e.client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
	must(b, err)
	want := 1
	for _, n := range benchWaveSizes {
		want += n
	}
	count := map[int]int{}
	for i := 0; len(r.waves) < want; i++ {
		suffix := fmt.Sprintf("w%d", i)
		w := plan.WaveOf(e.node+"-"+suffix, nil)
		if count[w] >= benchWaveSizes[w] {
			continue
		}
		count[w]++
		r.waves[e.addNode(suffix)] = w
	}
	proxies := map[string]*tallyProxy{}
	admin := e.kubeconfig
	defer func() { e.kubeconfig = admin }()
	for n := range r.waves {
		proxies[n] = newTallyProxy(b)
		e.kubeconfig = filepath.Join(e.dir, n+".kubeconfig")
		must(b, cp.WriteKubeconfig(e.kubeconfig, proxies[n].Config()))
		r.nets[n] = filepath.Join(e.dir, n, "net.d")
		must(b, os.MkdirAll(r.nets[n], 0o755))
		r.agents[n] = e.launchAgent(n, r.nets[n], "--rollout", "waves", "--rollout-canary-selector", canaryLabel+"=true",
			"--rollout-waves", strconv.Itoa(benchWaves), "--rollout-wave-interval", benchInterval.String(), "--lease-namespace", e.ns,
			"--resync-period", resync.String(), "--token-check-period", check.String())
	}
	for n, a := range r.agents {
		e.eventually(60*time.Second, "agent ready", func() error { return a.probe("/readyz") })
		e.waitCondition(n, corev1.ConditionFalse, "InSync")
	}
	return r, proxies
}

func snapshots(proxies map[string]*tallyProxy) map[string]tally {
	out := map[string]tally{}
	for n, p := range proxies {
		out[n] = p.Snapshot()
	}
	return out
}

func sumTallies(proxies map[string]*tallyProxy) tally {
	out := newTally()
	for _, p := range proxies {
		out.add(p.Snapshot())
	}
	return out
}

// gateReads are the gate's reads of its peers: lists and watches of
// Leases, and its Node's labels (the canary selector).
func gateReads(t tally) int {
	return t.Requests["list leases"] + t.Requests["watch leases"] + t.Requests["watchlist leases"] + t.Requests["get nodes"]
}

// gateWrites are the Lease writes that publish a new rollout state (a
// renewal that carries no new state is not the gate's).
func gateWrites(t tally) int {
	return t.Requests["update leases (state)"] + t.Requests["create leases (state)"]
}

// leaseReads says how the Leases informer filled its cache: requests,
// Lease events and bytes per node.
func leaseReads(t tally, nodes int) string {
	var parts []string
	for _, verb := range []string{"list", "watchlist", "watch"} {
		if k := t.Requests[verb+" leases"]; k > 0 {
			parts = append(parts, fmt.Sprintf("%s %s (%.1f KiB)", verb, perNodeCount(k, nodes), float64(t.Bytes[verb+" leases"])/1024/float64(nodes)))
		}
	}
	events := t.Events["leases ADDED"] + t.Events["leases MODIFIED"] + t.Events["leases BOOKMARK"]
	parts = append(parts, fmt.Sprintf("watch events ADDED %s, MODIFIED %s, BOOKMARK %s, %.0f bytes per event",
		perNodeCount(t.Events["leases ADDED"], nodes), perNodeCount(t.Events["leases MODIFIED"], nodes), perNodeCount(t.Events["leases BOOKMARK"], nodes),
		float64(t.Bytes["watchlist leases"]+t.Bytes["watch leases"])/float64(max(events, 1))))
	return strings.Join(parts, ", ")
}
