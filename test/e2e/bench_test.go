package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
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

// rssKiB reads a process's resident set and its anonymous part, in KiB.
func rssKiB(b *testing.B, pid int) (total, anon int64) {
	total, anon, err := measure.Memory(pid)
	must(b, err)
	return total, anon
}
