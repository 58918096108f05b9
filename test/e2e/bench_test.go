package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
)

// Benchmarks measure; they assert nothing about timings. Run them with
// `make bench`. Each reports p50 and p99 in milliseconds.
func report(b *testing.B, name string, samples []time.Duration) {
	b.ReportMetric(quantile(samples, 0.50), name+"-p50-ms")
	b.ReportMetric(quantile(samples, 0.99), name+"-p99-ms")
	b.ReportMetric(float64(len(samples)), name+"-samples")
	fmt.Printf("%s: n=%d p50=%.2fms p99=%.2fms max=%.2fms\n", name, len(samples), quantile(samples, 0.5), quantile(samples, 0.99), quantile(samples, 1))
}

// quantile is the q-quantile of samples in milliseconds (sorting them).
func quantile(samples []time.Duration, q float64) float64 {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return float64(samples[int(q*float64(len(samples)-1))]) / float64(time.Millisecond)
}

// reportRatio: how far a benchmark is from its floor, on the same changes.
func reportRatio(b *testing.B, name string, samples, floor []time.Duration) {
	p50, p99 := quantile(samples, 0.50)/quantile(floor, 0.50), quantile(samples, 0.99)/quantile(floor, 0.99)
	b.ReportMetric(p50, name+"-ratio-p50")
	b.ReportMetric(p99, name+"-ratio-p99")
	fmt.Printf("%s: ratio p50 = %.2f, ratio p99 = %.2f (agent/floor)\n", name, p50, p99)
}

// fileWaiter waits for a file in a directory to satisfy a check, woken by
// fsnotify so the measurement is not quantised by polling.
type fileWaiter struct {
	w    *fsnotify.Watcher
	path string
}

func newFileWaiter(b *testing.B, dir, name string) *fileWaiter {
	w, err := fsnotify.NewWatcher()
	must(b, err)
	must(b, w.Add(dir))
	b.Cleanup(func() { _ = w.Close() })
	return &fileWaiter{w: w, path: filepath.Join(dir, name)}
}

func (f *fileWaiter) wait(b *testing.B, check func(string) bool) time.Time {
	s := <-f.async(check)
	must(b, s.err)
	return s.at
}

// seen is when a file passed a check, or why it did not.
type seen struct {
	at  time.Time
	err error
}

// async waits in a goroutine, so that two files are timed on one change; it
// gives up after 30 s.
func (f *fileWaiter) async(check func(string) bool) <-chan seen {
	c := make(chan seen, 1)
	go func() {
		deadline := time.After(30 * time.Second)
		for {
			if data, err := os.ReadFile(f.path); err == nil && check(string(data)) {
				c <- seen{at: time.Now()}
				return
			}
			select {
			case <-f.w.Events:
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				c <- seen{err: fmt.Errorf("%s: not within 30s", f.path)}
				return
			}
		}
	}()
	return c
}

// newSyncedAgentEnv is an env whose agent has reported InSync.
func newSyncedAgentEnv(b *testing.B) *env {
	e := newEnv(b, "calico-config-v3.32.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	return e
}

// cmChanges: more changes give a profile of the agent more to look at.
var cmChanges = flag.Int("cm-changes", 200, "ConfigMap changes in BenchmarkConfigMapToDisk")

// BenchmarkConfigMapToDisk: a ConfigMap PATCH until the file on disk has it,
// for the agent and for the floor (test/e2e/floor: a watch and the durable
// writes the contract requires before the rename), both timed on each change.
func BenchmarkConfigMapToDisk(b *testing.B) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	pid := e.startAgent().Cmd.Process.Pid
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	floorNet, floorPid := startFloor(b, e)
	agentW := newFileWaiter(b, e.net, "10-calico.conflist")
	floorW := newFileWaiter(b, floorNet, "10-calico.conflist")
	var agent, floor []time.Duration
	cpu0, floorCPU0 := cpuTicks(b, pid), cpuTicks(b, floorPid) // user and system, in 10 ms ticks
	b.ResetTimer()
	for i := 0; i < *cmChanges; i++ {
		mtu := strconv.Itoa(1000 + i)
		has := func(s string) bool { return strings.Contains(s, `"mtu": `+mtu+`,`) }
		agentC, floorC := agentW.async(has), floorW.async(has)
		start := time.Now()
		_, err := e.client.CoreV1().ConfigMaps(e.ns).Patch(e.ctx, "calico-config", types.MergePatchType,
			[]byte(`{"data":{"veth_mtu":"`+mtu+`"}}`), metav1.PatchOptions{})
		must(b, err)
		a, f := <-agentC, <-floorC
		must(b, errors.Join(a.err, f.err))
		agent, floor = append(agent, a.at.Sub(start)), append(floor, f.at.Sub(start))
	}
	report(b, "configmap-to-disk", agent)
	report(b, "configmap-to-disk-floor", floor)
	reportRatio(b, "configmap-to-disk", agent, floor)
	cpu, floorCPU := float64(cpuTicks(b, pid)-cpu0)*10/float64(*cmChanges), float64(cpuTicks(b, floorPid)-floorCPU0)*10/float64(*cmChanges)
	b.ReportMetric(cpu, "agent-cpu-ms/change")
	b.ReportMetric(floorCPU, "floor-cpu-ms/change")
}

// startFloor builds and starts the floor program on e's ConfigMap, as the
// agent is built and started; it returns the directory it writes and its pid.
func startFloor(b *testing.B, e *env) (string, int) {
	dir := filepath.Join(e.dir, "floor")
	net := filepath.Join(dir, "net.d")
	must(b, os.MkdirAll(net, 0o755))
	bin := filepath.Join(dir, "floor")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./floor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the floor: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--kubeconfig", e.kubeconfig, "--namespace", e.ns, "--configmap", "calico-config",
		"--out", filepath.Join(net, "10-calico.conflist"), "--record", filepath.Join(dir, "record.json"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	must(b, cmd.Start())
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	// The floor writes the file once, then watches from the version it
	// rendered: a change made from now on reaches it.
	newFileWaiter(b, net, "10-calico.conflist").wait(b, func(s string) bool { return s != "" })
	return net, cmd.Process.Pid
}

// BenchmarkTokenSecretReplacedToDisk: from the moment the token controller
// has populated the new Secret (seen on a watch) to the token on disk.
func BenchmarkTokenSecretReplacedToDisk(b *testing.B) {
	e := newSyncedAgentEnv(b)
	fw := newFileWaiter(b, e.net, "calico-kubeconfig")
	w, err := e.client.CoreV1().Secrets(e.ns).Watch(e.ctx, metav1.ListOptions{})
	must(b, err)
	defer w.Stop()
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("calico-node-token-bench%03d", i)
		must(b, e.client.CoreV1().Secrets(e.ns).Delete(e.ctx, e.secret, metav1.DeleteOptions{}))
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
			Type: corev1.SecretTypeServiceAccountToken}
		_, err := e.client.CoreV1().Secrets(e.ns).Create(e.ctx, s, metav1.CreateOptions{})
		must(b, err)
		var token string
		var populated time.Time
		for token == "" {
			select {
			case ev := <-w.ResultChan():
				if sec, ok := ev.Object.(*corev1.Secret); ok && sec.Name == name && len(sec.Data["token"]) > 0 {
					token, populated = string(sec.Data["token"]), time.Now()
				}
			case <-time.After(30 * time.Second):
				b.Fatal("token controller did not populate the Secret")
			}
		}
		e.secret = name
		done := fw.wait(b, func(s string) bool { return strings.Contains(s, token) })
		samples = append(samples, done.Sub(populated))
	}
	report(b, "token-secret-to-disk", samples)
}

// BenchmarkEditToCondition: a direct edit (by rename) until the Node
// condition says Drifted, and the undo until it says InSync.
func BenchmarkEditToCondition(b *testing.B) {
	e := newSyncedAgentEnv(b)
	path := filepath.Join(e.net, "10-calico.conflist")
	orig := e.read("10-calico.conflist")
	w, err := e.client.CoreV1().Nodes().Watch(e.ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", e.node).String()})
	must(b, err)
	defer w.Stop()
	waitReason := func(reason string) time.Time {
		for {
			select {
			case ev := <-w.ResultChan():
				if n, ok := ev.Object.(*corev1.Node); ok {
					for _, c := range n.Status.Conditions {
						if c.Type == "CalicoCNIConfigDrift" && c.Reason == reason {
							return time.Now()
						}
					}
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("condition %s not within 30s", reason)
			}
		}
	}
	replace := func(content string) time.Time {
		must(b, os.WriteFile(path+".edit", []byte(content), 0o644))
		start := time.Now()
		must(b, os.Rename(path+".edit", path))
		return start
	}
	// One change every 300 ms: the latency of an edit, not the agent's
	// throughput under an edit storm (its client makes at most 5 requests a
	// second, burst 10, which a storm of edits would measure instead).
	pace := time.NewTicker(300 * time.Millisecond)
	defer pace.Stop()
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 100; i++ {
		<-pace.C
		start := replace(strings.Replace(orig, `"mtu": 0,`, `"mtu": `+strconv.Itoa(1000+i)+`,`, 1))
		samples = append(samples, waitReason("Drifted").Sub(start))
		<-pace.C
		start = replace(orig)
		samples = append(samples, waitReason("InSync").Sub(start))
	}
	report(b, "edit-to-condition", samples)
}

// BenchmarkIdleAgent: an idle agent over 60 s: RSS, CPU, API requests.
func BenchmarkIdleAgent(b *testing.B) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	proxy := harness.NewProxy(b, cp.Config, cp.Host())
	kc := filepath.Join(e.dir, "proxied.kubeconfig")
	must(b, cp.WriteKubeconfig(kc, proxy.Config()))
	e.kubeconfig = kc
	a := e.startAgent("--token-check-period", "10m")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	// Let start-up settle: the first reconcile, condition and events.
	e.eventually(30*time.Second, "start-up settled", func() error {
		if a.metric("calico_cni_sync_reconciles_total") < 1 {
			return errorf("no reconcile yet")
		}
		return nil
	})
	// The window starts once start-up traffic (condition, events) is over:
	// no request for a whole second.
	seen, stableSince := int64(-1), time.Now()
	e.eventually(30*time.Second, "start-up traffic over", func() error {
		if n := proxy.Requests(); n != seen {
			seen, stableSince = n, time.Now()
		}
		if time.Since(stableSince) < time.Second {
			return errorf("requests still coming")
		}
		return nil
	})
	pid := a.Cmd.Process.Pid
	cpu0, req0, watch0 := cpuTicks(b, pid), proxy.Requests(), proxy.Watches()
	b.ResetTimer()
	var maxRSS, maxAnon int64
	end := time.After(60 * time.Second)
	sample := time.NewTicker(time.Second)
	defer sample.Stop()
	for window := true; window; {
		rss, anon := rssKiB(b, pid)
		maxRSS, maxAnon = max(maxRSS, rss), max(maxAnon, anon)
		select {
		case <-end:
			window = false
		case <-sample.C:
		}
	}
	cpu := float64(cpuTicks(b, pid)-cpu0) / 100 // USER_HZ
	b.ReportMetric(float64(maxRSS)/1024, "rss-MiB")
	b.ReportMetric(float64(maxAnon)/1024, "rss-anon-MiB")
	b.ReportMetric(cpu/60*100, "cpu-%")
	b.ReportMetric(float64(proxy.Requests()-req0), "api-requests")
	b.ReportMetric(float64(proxy.Watches()-watch0), "new-watches")
	fmt.Printf("idle 60s: rss=%.1fMiB (anonymous %.1fMiB) cpu=%.2fs (%.2f%%) api-requests=%d new-watches=%d (open at start: %d)\n",
		float64(maxRSS)/1024, float64(maxAnon)/1024, cpu, cpu/60*100, proxy.Requests()-req0, proxy.Watches()-watch0, watch0)
}

// BenchmarkOnce: --once wall time against the local API server, on an empty
// node and on a current one.
func BenchmarkOnce(b *testing.B) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	var fresh, current []time.Duration
	b.ResetTimer()
	for i := 0; i < 30; i++ {
		must(b, os.RemoveAll(e.net))
		must(b, os.RemoveAll(filepath.Join(e.dir, "state")))
		start := time.Now()
		if code, out := e.run(e.args("--once")...); code != 0 {
			b.Fatalf("--once: %d %s", code, out)
		}
		fresh = append(fresh, time.Since(start))
		start = time.Now()
		if code, out := e.run(e.args("--once")...); code != 0 {
			b.Fatalf("--once: %d %s", code, out)
		}
		current = append(current, time.Since(start))
	}
	report(b, "once-empty-node", fresh)
	report(b, "once-current-node", current)
}

// rssKiB reads a process's resident set and its anonymous part, in KiB.
func rssKiB(b *testing.B, pid int) (total, anon int64) {
	total, anon, err := measure.Memory(pid)
	must(b, err)
	return total, anon
}

// cpuTicks is a process's user and system CPU time in 10 ms ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	d, err := measure.CPU(pid)
	must(b, err)
	return int64(d / (10 * time.Millisecond))
}
