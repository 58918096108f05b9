package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	stuckNodes  = flag.Int("stuck-nodes", 5000, "Nodes in BenchmarkStuck100k")
	stuckLevels = flag.String("stuck-pods", "10000,100000", "BenchmarkStuck100k: the pod counts measured, in order (the cluster grows from one to the next)")
)

// The shape of BenchmarkStuck100k's cluster.
const (
	benchNamespaces = 100
	benchWorkers    = 32
	// Of the bulk pods, one in benchPendingEvery stays Pending, mounting a
	// Secret that exists: a candidate report must read Secrets for, not stuck.
	benchPendingEvery = 20
	benchNoiseEvents  = 3000 // sandbox and mount events that make nothing stuck
	benchStuckEach    = 100  // missing-Secret and Unauthorized ContainerCreating pods each
	benchTerminating  = 50   // pods stuck terminating
)

// stuckBench is the growing cluster and what is planted in it.
type stuckBench struct {
	e       *env
	pods    int                     // bulk pods created so far
	want    map[string]stuckRow     // planted stuck pods, by namespace/pod
	owners  []metav1.OwnerReference // one ReplicaSet per namespace
	stuckAt time.Time               // when the terminating pods are stuck
}

// parallel runs f(i) for i in [0, n) on benchWorkers goroutines, failing
// the benchmark on the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var wg gosync.WaitGroup
	var once gosync.Once
	var first error
	next := make(chan int)
	for range benchWorkers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	must(b, first)
}

func benchNS(i int) string   { return fmt.Sprintf("bench-stuck-%d", i%benchNamespaces) }
func benchNode(i int) string { return fmt.Sprintf("bench-node-%d", i%*stuckNodes) }

// newStuckBench creates the Nodes, namespaces, a Deployment and ReplicaSet
// per namespace, and the planted stuck pods with their events; the
// terminating ones first, so that they are stuck by the time of the first
// measurement.
func newStuckBench(b *testing.B) *stuckBench {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	b.Cleanup(cancel)
	e := &env{t: b, ctx: ctx, client: cp.Client, dir: b.TempDir()}
	e.kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	must(b, cp.WriteKubeconfig(e.kubeconfig, cp.Config))
	s := &stuckBench{e: e, want: map[string]stuckRow{}, owners: make([]metav1.OwnerReference, benchNamespaces)}
	start := time.Now()
	parallel(b, *stuckNodes, func(i int) error {
		_, err := cp.Client.CoreV1().Nodes().Create(ctx, linuxNode(benchNode(i)), metav1.CreateOptions{})
		return err
	})
	// A few nodes say the CNI's token was rejected.
	for i := range 10 {
		e.setCondition(benchNode(i), corev1.ConditionTrue, "TokenRejected", "the API server rejects the token in calico-kubeconfig", time.Now())
	}
	parallel(b, benchNamespaces, func(i int) error {
		ns := benchNS(i)
		if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		for j := range 5 {
			if _, err := cp.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-" + strconv.Itoa(j)}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range benchNamespaces {
		ns := benchNS(i)
		e.ns = ns
		e.eventually(time.Minute, "default ServiceAccount of "+ns, func() error {
			_, err := cp.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err
		})
		s.owners[i] = e.deploymentRS("web")
	}
	s.plant(b)
	fmt.Printf("BenchmarkStuck100k: %d Nodes, %d namespaces and %d planted pods created in %s\n", *stuckNodes, benchNamespaces, len(s.want), time.Since(start).Round(time.Millisecond))
	return s
}

// plant creates the stuck pods and the events that make them so.
func (s *stuckBench) plant(b *testing.B) {
	ctx, core, one := s.e.ctx, cp.Client.CoreV1(), int64(1)
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	var mu gosync.Mutex
	expect := func(p *corev1.Pod, why, secret, owner string) {
		mu.Lock()
		defer mu.Unlock()
		s.want[p.Namespace+"/"+p.Name] = stuckRow{Namespace: p.Namespace, Pod: p.Name, Node: p.Spec.NodeName, Why: why, Secret: secret, Owner: owner}
	}
	kinds := []struct {
		n    int
		make func(i int) error
	}{
		{benchTerminating, func(i int) error {
			p, err := createPod(ctx, benchNS(i), fmt.Sprintf("term-%d", i), benchNode(i), &s.owners[i%benchNamespaces])
			if err == nil {
				err = writePodStatus(ctx, p, corev1.PodRunning, running)
			}
			if err == nil {
				err = core.Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &one})
			}
			if err == nil {
				err = recordPodEvent(ctx, p, "FailedKillPodSandbox", cniDelUnauthorized, time.Now())
				expect(p, "cniUnauthorized", "", "Deployment/web")
			}
			return err
		}},
		{benchStuckEach, func(i int) error {
			p, err := createPod(ctx, benchNS(i), fmt.Sprintf("missing-%d", i), benchNode(i), &s.owners[i%benchNamespaces], secretVolume(oldToken, false, i%2 == 0))
			if err == nil {
				err = recordPodEvent(ctx, p, "FailedMount", `MountVolume.SetUp failed for volume "token" : secret "`+oldToken+`" not found`, time.Now())
				expect(p, "missingSecret", oldToken, "Deployment/web")
			}
			return err
		}},
		{benchStuckEach, func(i int) error {
			p, err := createPod(ctx, benchNS(i), fmt.Sprintf("cc-%d", i), benchNode(i), nil)
			if err == nil {
				err = recordPodEvent(ctx, p, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now())
				expect(p, "cniUnauthorized", "", "")
			}
			return err
		}},
		// Running pods whose sandbox failed Unauthorized once: read, not stuck.
		{benchStuckEach, func(i int) error {
			p, err := createPod(ctx, benchNS(i), fmt.Sprintf("healed-%d", i), benchNode(i), &s.owners[i%benchNamespaces])
			if err == nil {
				err = writePodStatus(ctx, p, corev1.PodRunning, running)
			}
			if err == nil {
				err = recordPodEvent(ctx, p, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now())
			}
			return err
		}},
	}
	for k, kind := range kinds {
		parallel(b, kind.n, kind.make)
		if k == 0 {
			first, err := core.Pods(benchNS(0)).Get(ctx, "term-0", metav1.GetOptions{})
			must(b, err)
			s.stuckAt = first.DeletionTimestamp.Add(time.Second + 61*time.Second)
		}
	}
}

// grow creates bulk pods up to total, with a noise event on some.
func (s *stuckBench) grow(b *testing.B, total int) time.Duration {
	ctx, start, from := s.e.ctx, time.Now(), s.pods
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	noiseEvery := max(1, total/benchNoiseEvents)
	parallel(b, total-from, func(k int) error {
		i := from + k
		var vols []corev1.Volume
		if i%benchPendingEvery == 0 {
			vols = append(vols, secretVolume("app-"+strconv.Itoa(i%5), false, false))
		}
		p, err := createPod(ctx, benchNS(i), fmt.Sprintf("pod-%d", i), benchNode(i), &s.owners[i%benchNamespaces], vols...)
		if err == nil && i%benchPendingEvery != 0 {
			err = writePodStatus(ctx, p, corev1.PodRunning, running)
		}
		if err == nil && i%noiseEvery == 0 {
			err = recordPodEvent(ctx, p, "FailedCreatePodSandBox", `failed to reserve sandbox name "x": name is reserved`, time.Now())
		}
		return err
	})
	s.pods = total
	return time.Since(start)
}

// BenchmarkStuck100k: report --stuck -o json on a cluster of 5000 Nodes and
// 100 000 pods (no kubelet: the objects only), measured at each pod count
// of -stuck-pods as the cluster grows: wall time and the peak RSS of the
// process (its rusage), which must stay bounded as the pods grow. Each
// measurement also checks the planted stuck pods are listed, and only
// they. The objects are left for the package's control plane to take down.
func BenchmarkStuck100k(b *testing.B) {
	s := newStuckBench(b)
	for _, level := range strings.Split(*stuckLevels, ",") {
		total, err := strconv.Atoi(level)
		must(b, err)
		b.Run("pods="+level, func(b *testing.B) {
			var created time.Duration
			if s.pods < total {
				created = s.grow(b, total)
				fmt.Printf("BenchmarkStuck100k: %d pods in the cluster after %s of creation\n", total, created.Round(time.Millisecond))
			}
			// The terminating pods are stuck only 60 s past their deletion
			// timestamp plus grace period: a known instant, not a guess.
			<-time.After(time.Until(s.stuckAt))
			b.ResetTimer()
			for range b.N {
				s.measure(b, total)
			}
			b.ReportMetric(created.Seconds(), "create-s")
		})
	}
}

// measure runs report --stuck -o json once and checks its rows.
func (s *stuckBench) measure(b *testing.B, pods int) {
	cmd := exec.CommandContext(s.e.ctx, binary, "report", "--stuck", "--kubeconfig", s.e.kubeconfig, "-o", "json")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		b.Fatalf("report --stuck: %v, want exit 1\n%s", err, errOut.String())
	}
	maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	var doc struct {
		Stuck []stuckRow `json:"stuck"`
	}
	must(b, json.Unmarshal(out.Bytes(), &doc))
	got := map[string]stuckRow{}
	for _, r := range doc.Stuck {
		r.Fix = ""
		got[r.Namespace+"/"+r.Pod] = r
	}
	if len(got) != len(s.want) {
		b.Fatalf("%d stuck pods listed, want the %d planted", len(got), len(s.want))
	}
	for k, w := range s.want {
		if got[k] != w {
			b.Fatalf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(float64(maxRSS)/1024, "peak-rss-MiB")
	fmt.Printf("BenchmarkStuck100k: %d Nodes, %d pods, %d stuck: report --stuck -o json took %s, peak RSS %.1f MiB\n",
		*stuckNodes, pods+len(s.want)+benchStuckEach, len(doc.Stuck), wall.Round(time.Millisecond), float64(maxRSS)/1024)
}
