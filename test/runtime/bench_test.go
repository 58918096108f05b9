package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Benchmarks measure; they assert nothing about timings. Run them with
// `make bench`. Latencies are reported as p50 and p99 in milliseconds.

func report(b *testing.B, name string, samples []time.Duration) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	q := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
	fmt.Printf("%s: n=%d p50=%.1fms p99=%.1fms max=%.1fms\n", name, len(samples), q(0.5), q(0.99), q(1))
}

// newLoadedEnv is an env whose agent has reported InSync and whose runtime
// has loaded Calico's conflist.
func newLoadedEnv(b *testing.B) (*env, *agent) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	a := e.startAgent()
	e.waitCondition(corev1.ConditionFalse, "InSync")
	e.ctd.waitInfo(e.ctx, "loads Calico's", loads("k8s-pod-network", filepath.Join(e.net, "10-calico.conflist")))
	return e, a
}

// setVethMTU changes calico-config's veth_mtu, which the v3.32 template
// renders into the conflist's "mtu".
func (e *env) setVethMTU(mtu string) {
	e.updateConfigMap(func(d map[string]string) { d["veth_mtu"] = mtu })
}

// BenchmarkRuntimeConfigMapToLoaded: a ConfigMap change until containerd
// has loaded the new config, next to the agent's own file-on-disk figure.
// Three clocks, each from just before the Update call: the new mtu in the
// file (the test's fsnotify wakes the check); containerd starting the
// reload of the rename that put it there (its log's timestamp; the reload
// itself takes well under a millisecond); crictl info first showing the
// new mtu in the loaded config (polled back to back, so this is late by up
// to one crictl call, reported as crictl-info-call).
func BenchmarkRuntimeConfigMapToLoaded(b *testing.B) {
	e, _ := newLoadedEnv(b)
	fw := newFileWaiter(b, e.net, "10-calico.conflist")
	// One change every 500 ms: the latency of a change, not the agent's
	// throughput. Each change costs the agent two GETs of a ServiceAccount
	// (one per reconcile: the ConfigMap's, then its own write's file
	// event), and its API client allows 5 requests a second: paced faster,
	// this measures the client's throttling instead.
	pace := time.NewTicker(500 * time.Millisecond)
	defer pace.Stop()
	var disk, reloaded, seen, calls []time.Duration
	b.ResetTimer()
	for i := range 100 {
		<-pace.C
		mtu := strconv.Itoa(1000 + i)
		want := `"mtu": ` + mtu + `,`
		mark := e.ctd.mark()
		start := time.Now()
		e.setVethMTU(mtu)
		disk = append(disk, fw.wait("mtu "+mtu, func(s string) bool { return strings.Contains(s, want) }).Sub(start))
		for deadline := time.Now().Add(30 * time.Second); ; {
			call := time.Now()
			ri, err := e.ctd.info()
			calls = append(calls, time.Since(call))
			must(b, err)
			if ri.NetworkReady && strings.Contains(ri.Source, want) {
				seen = append(seen, time.Since(start))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("crictl info: mtu %s not loaded within 30s: %s", mtu, ri)
			}
		}
		e.eventually(10*time.Second, "containerd logs the reload", func() error {
			for _, r := range e.ctd.reloadsSince(mark) {
				if strings.HasPrefix(r.event, "RENAME ") && strings.Contains(r.event, "/.10-calico.conflist") {
					reloaded = append(reloaded, r.at.Sub(start.Round(0)))
					return nil
				}
			}
			return fmt.Errorf("no reload on the conflist's rename yet")
		})
	}
	b.StopTimer()
	report(b, "configmap-to-disk", disk)
	report(b, "configmap-to-containerd-reload", reloaded)
	report(b, "configmap-to-crictl-info", seen)
	report(b, "crictl-info-call", calls)
}

// BenchmarkRuntimeBrokenLoads: how many of containerd's reloads fail per
// 1000 writes of the conflist, for the agent's writes (300 ConfigMap
// changes, each waited for on disk: the agent's API client paces them at
// 2 to 5 a second) and for 1000 truncate-and-writes of the same content
// (os.WriteFile, as install-cni and calico-node write) on the same runtime.
// A crictl poller runs throughout; its count of NetworkReady=false is
// reported beside containerd's own count of failed reloads.
func BenchmarkRuntimeBrokenLoads(b *testing.B) {
	const changes, writes = 300, 1000
	e, a := newLoadedEnv(b)
	conf := filepath.Join(e.net, "10-calico.conflist")
	fw := newFileWaiter(b, e.net, "10-calico.conflist")
	b.ResetTimer()

	written0 := a.metric("calico_cni_sync_writes_total", "10-calico.conflist")
	mark, stopPoll := e.ctd.mark(), e.ctd.poll()
	start := time.Now()
	for i := range changes {
		mtu := strconv.Itoa(2000 + i)
		e.setVethMTU(mtu)
		fw.wait("mtu "+mtu, func(s string) bool { return strings.Contains(s, `"mtu": `+mtu+`,`) })
	}
	agentTime := time.Since(start)
	agentPoll := stopPoll()
	agentWrites := a.metric("calico_cni_sync_writes_total", "10-calico.conflist") - written0
	agentReloads := e.ctd.reloadsSince(mark)
	agentBroken, _ := failed(agentReloads)

	a.stop()
	final, err := os.ReadFile(conf)
	must(b, err)
	last := `"mtu": ` + strconv.Itoa(2000+changes-1) + `,`
	mark, stopPoll = e.ctd.mark(), e.ctd.poll()
	tick := time.NewTicker(10 * time.Millisecond)
	for i := range writes {
		<-tick.C
		must(b, os.WriteFile(conf, []byte(strings.Replace(string(final), last, `"mtu": `+strconv.Itoa(5000+i)+`,`, 1)), 0o644))
	}
	tick.Stop()
	controlPoll := stopPoll()
	controlReloads := e.ctd.reloadsSince(mark)
	controlBroken, sample := failed(controlReloads)
	b.StopTimer()

	per1000 := func(n int, w float64) float64 { return float64(n) * 1000 / w }
	b.ReportMetric(per1000(agentBroken, agentWrites), "agent-broken-loads/1000-writes")
	b.ReportMetric(per1000(controlBroken, writes), "truncate-write-broken-loads/1000-writes")
	fmt.Printf("agent: %.0f writes in %s (one every %s); containerd: %d reloads, %d failed (%.1f per 1000 writes); crictl poller: %s\n",
		agentWrites, agentTime.Round(time.Millisecond), (agentTime / time.Duration(agentWrites)).Round(time.Millisecond),
		len(agentReloads), agentBroken, per1000(agentBroken, agentWrites), agentPoll)
	fmt.Printf("truncate-and-write: %d writes, one every 10ms; containerd: %d reloads, %d failed (%.1f per 1000 writes); crictl poller: %s\n",
		writes, len(controlReloads), controlBroken, per1000(controlBroken, writes), controlPoll)
	if len(sample) > 0 {
		fmt.Printf("truncate-and-write, a failed reload: %s\n", sample[0])
	}
}
