package e2e

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
)

// Benchmarks measure; they assert nothing about timings. Run them with
// `make bench`. Each reports p50 and p99 in milliseconds.

func report(b *testing.B, name string, samples []time.Duration) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	q := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
	b.ReportMetric(float64(len(samples)), name+"-samples")
	fmt.Printf("%s: n=%d p50=%.1fms p99=%.1fms max=%.1fms\n", name, len(samples), q(0.5), q(0.99), q(1))
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
	deadline := time.After(30 * time.Second)
	for {
		if data, err := os.ReadFile(f.path); err == nil && check(string(data)) {
			return time.Now()
		}
		select {
		case <-f.w.Events:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			b.Fatalf("%s: not within 30s", f.path)
		}
	}
}

// newSyncedAgentEnv is an env whose agent has reported InSync.
func newSyncedAgentEnv(b *testing.B) *env {
	e := newEnv(b, "calico-config-v3.32.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	return e
}

// BenchmarkConfigMapToDisk: a ConfigMap update until the file on disk has it.
func BenchmarkConfigMapToDisk(b *testing.B) {
	e := newSyncedAgentEnv(b)
	fw := newFileWaiter(b, e.net, "10-calico.conflist")
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 200; i++ {
		mtu := strconv.Itoa(1000 + i)
		cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "calico-config", metav1.GetOptions{})
		must(b, err)
		cm.Data["veth_mtu"] = mtu
		start := time.Now()
		_, err = e.client.CoreV1().ConfigMaps(e.ns).Update(e.ctx, cm, metav1.UpdateOptions{})
		must(b, err)
		done := fw.wait(b, func(s string) bool { return strings.Contains(s, `"mtu": `+mtu+`,`) })
		samples = append(samples, done.Sub(start))
	}
	report(b, "configmap-to-disk", samples)
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
	// One change every 100 ms: the latency of an edit, not the agent's
	// throughput under an edit storm (its client makes at most 20 requests a
	// second, which a storm of edits would measure instead).
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 200; i++ {
		<-pace.C
		start := replace(strings.Replace(orig, `"mtu": 0,`, `"mtu": `+strconv.Itoa(1000+i)+`,`, 1))
		samples = append(samples, waitReason("Drifted").Sub(start))
		<-pace.C
		start = replace(orig)
		samples = append(samples, waitReason("InSync").Sub(start))
	}
	report(b, "edit-to-condition", samples)
}

// countingProxy forwards to the API server and counts requests by verb
// (watch counted apart), so idle traffic is measured, not assumed.
type countingProxy struct {
	srv               *httptest.Server
	requests, watches atomic.Int64
}

func newCountingProxy(b *testing.B) *countingProxy {
	rt, err := rest.TransportFor(cp.Config)
	must(b, err)
	target, _ := url.Parse("https://" + cp.Host())
	p := &countingProxy{}
	rp := &httputil.ReverseProxy{Transport: rt, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Header.Del("Authorization") // the proxy's own client certificate authenticates
	}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
			p.watches.Add(1)
		} else {
			p.requests.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.Listener, err = net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	p.srv.StartTLS()
	b.Cleanup(p.srv.Close)
	return p
}

// BenchmarkIdleAgent: an idle agent over 60 s: RSS, CPU, API requests.
func BenchmarkIdleAgent(b *testing.B) {
	e := newEnv(b, "calico-config-v3.32.yaml")
	proxy := newCountingProxy(b)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.srv.Certificate().Raw})
	cfg := &rest.Config{Host: proxy.srv.URL, BearerToken: "via-proxy", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	kc := filepath.Join(e.dir, "proxied.kubeconfig")
	must(b, cp.WriteKubeconfig(kc, cfg))
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
		if n := proxy.requests.Load(); n != seen {
			seen, stableSince = n, time.Now()
		}
		if time.Since(stableSince) < time.Second {
			return errorf("requests still coming")
		}
		return nil
	})
	pid := a.cmd.Process.Pid
	cpu0, req0, watch0 := cpuTicks(b, pid), proxy.requests.Load(), proxy.watches.Load()
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
	b.ReportMetric(float64(proxy.requests.Load()-req0), "api-requests")
	b.ReportMetric(float64(proxy.watches.Load()-watch0), "new-watches")
	fmt.Printf("idle 60s: rss=%.1fMiB (anonymous %.1fMiB) cpu=%.2fs (%.2f%%) api-requests=%d new-watches=%d (open at start: %d)\n",
		float64(maxRSS)/1024, float64(maxAnon)/1024, cpu, cpu/60*100, proxy.requests.Load()-req0, proxy.watches.Load()-watch0, watch0)
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

// rssKiB reads a process's resident set (VmRSS), and its anonymous part
// (heap and stacks; the rest is the binary's pages mapped from disk).
func rssKiB(b *testing.B, pid int) (total, anon int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(b, err)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			total = v
		case "RssAnon:":
			anon = v
		}
	}
	return total, anon
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(b, err)
	f := strings.Fields(string(data)[strings.LastIndex(string(data), ")")+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
