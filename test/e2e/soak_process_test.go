package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/agentbin"
)

// procSample is the agent process at one moment.
type procSample struct {
	at         time.Duration // since the schedule began
	goroutines int           // go_goroutines from /metrics
	fds        int           // entries of /proc/PID/fd
	apiConns   int           // of those, TCP connections to the API server
	rssKB      int           // VmRSS of /proc/PID/status
}

// Besides the API server's connections, which come and go on their own
// clock (see checkNoGrowth), each of which holds one fd and one goroutine (its
// HTTP/2 read loop).
func (s procSample) otherGoroutines() int { return s.goroutines - s.apiConns }
func (s procSample) otherFDs() int        { return s.fds - s.apiConns }

// procSampler samples the agent every period, through its own HTTP
// connection so its scrapes hold one connection open, always the same.
type procSampler struct {
	pid     int
	addr    string
	apiPort string // the API server's port, as /proc/net/tcp writes it
	client  *http.Client

	mu      sync.Mutex
	samples []procSample
	errs    int
	lastErr error
}

func newProcSampler(a *agent, apiServer string) *procSampler {
	_, port, _ := strings.Cut(apiServer, ":")
	n, _ := strconv.Atoi(port)
	return &procSampler{pid: a.Cmd.Process.Pid, addr: a.Addr(), apiPort: fmt.Sprintf("%04X", n), client: &http.Client{Timeout: 10 * time.Second}}
}

func (p *procSampler) run(ctx context.Context, began time.Time, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s, err := p.sample()
		p.mu.Lock()
		if err != nil {
			p.errs++
			p.lastErr = err
		} else {
			s.at = time.Since(began)
			p.samples = append(p.samples, s)
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *procSampler) sample() (procSample, error) {
	var s procSample
	var err error
	if s.goroutines, err = p.goroutines(); err != nil {
		return s, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	sockets := map[string]bool{}
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			sockets[strings.TrimSuffix(inode, "]")] = true
		}
	}
	if s.apiConns, err = p.connectionsTo(sockets); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKB, err = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return s, err
		}
	}
	return s, errors.New("no VmRSS in /proc/PID/status")
}

// connectionsTo counts the sockets, of those given by inode, whose peer is
// the API server's port on loopback.
func (p *procSampler) connectionsTo(sockets map[string]bool) (int, error) {
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", p.pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(string(table)) {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) > 9 && f[2] == "0100007F:"+p.apiPort && sockets[f[9]] {
			n++
		}
	}
	return n, nil
}

func (p *procSampler) goroutines() (int, error) {
	resp, err := p.client.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics (%v)", sc.Err())
}

// failures is how many samples failed, and the last error.
func (p *procSampler) failures() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errs, p.lastErr
}

// window is the samples taken in [from, to).
func (p *procSampler) window(from, to time.Duration) []procSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var w []procSample
	for _, s := range p.samples {
		if s.at >= from && s.at < to {
			w = append(w, s)
		}
	}
	return w
}

// procStat summarises one measure over samples.
type procStat struct{ min, median, max, first, last int }

func statOf(samples []procSample, measure func(procSample) int) procStat {
	if len(samples) == 0 {
		return procStat{}
	}
	v := make([]int, len(samples))
	for i, s := range samples {
		v[i] = measure(s)
	}
	st := procStat{first: v[0], last: v[len(v)-1]}
	slices.Sort(v)
	st.min, st.median, st.max = v[0], v[len(v)/2], v[len(v)-1]
	return st
}

func (s procStat) String() string {
	return fmt.Sprintf("first %d, min %d, median %d, max %d, last %d", s.first, s.min, s.median, s.max, s.last)
}

// useShippedBinary builds the agent as the Dockerfile does (static, no race
// detector), as TestMain does for benchmarks, and runs this test's agents
// with it: under the race detector the RSS measures the detector.
func useShippedBinary(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "calico-cni-sync")
	must(t, agentbin.Shipped(path))
	raceBinary := binary
	binary = path
	t.Cleanup(func() { binary = raceBinary })
}

// checkNoGrowth compares the agent after the schedule with the agent at the
// end of the warm-up (the median of its second half). Goroutines and file
// descriptors, net of the API server's connections, must come back to that
// level plus a small slack within a deadline. The API server's connections
// come and go on their own clock (a restart of the API server, HTTP/2
// reconnects, connections idling out after net/http's 90 s): they must stay
// within what one per token check over that idle time accounts for; a leak
// would pass that bound. RSS, in a long run of the shipped
// binary, may not grow by more than soakRSSGrowth over the last sixth of the
// run.
func (s *soak) checkNoGrowth(t *testing.T, p *procSampler, warmup time.Duration) {
	t.Helper()
	base := p.window(warmup/2, warmup)
	if len(base) == 0 {
		n, err := p.failures()
		t.Fatalf("no samples in the warm-up's second half (%d sampling errors, last %v)", n, err)
	}
	g := statOf(base, procSample.otherGoroutines).median + soakGoroutineSlack
	fds := statOf(base, procSample.otherFDs).median + soakFDSlack
	conns := int(soakIdleConnTimeout/soakTokenCheckPeriod) + soakFDSlack
	s.e.eventually(2*soakIdleConnTimeout, fmt.Sprintf("at most %d goroutines and %d fds besides at most %d connections to the API server", g, fds, conns), func() error {
		now, err := p.sample()
		if err != nil {
			return err
		}
		if now.otherGoroutines() > g || now.otherFDs() > fds || now.apiConns > conns {
			return errorf("%d goroutines and %d fds besides %d connections to the API server", now.otherGoroutines(), now.otherFDs(), now.apiConns)
		}
		return nil
	})
	all := p.window(0, soakForever)
	if ran := all[len(all)-1].at; s.shipped && ran >= soakRSSAfter {
		rss := statOf(base, procSample.rss).median
		end := statOf(p.window(ran-ran/6, soakForever), procSample.rss).median
		if float64(end) > soakRSSGrowth*float64(rss) {
			t.Errorf("RSS grew from %d kB after the warm-up to %d kB in the last sixth of the run", rss, end)
		}
	}
}

func (s procSample) rss() int { return s.rssKB }

// summary logs what the soak did and saw, for docs and for a failure.
func (s *soak) summary(t *testing.T, p *procSampler, warmup, ran time.Duration) {
	names := make([]string, 0, len(s.stats))
	total := 0
	for n, st := range s.stats {
		names = append(names, fmt.Sprintf("%s %d (slowest %s, converged in %s)", n, st.n, st.slowestAct.Round(10*time.Millisecond), st.slowestTo.Round(10*time.Millisecond)))
		total += st.n
	}
	slices.Sort(names)
	t.Logf("soak ran %s, %d actions (each: how many, the slowest, the slowest convergence after one): %s", ran.Round(time.Second), total, strings.Join(names, ", "))
	t.Logf("reader: %d conflist loads, %d kubeconfig loads, %d with the conflist absent", s.reader.loads.Load(), s.reader.kubeconfigLoads.Load(), s.reader.absent.Load())
	if warmup == 0 {
		warmup = ran
	}
	all := p.window(0, soakForever)
	base, post := p.window(warmup/2, warmup), p.window(warmup, soakForever)
	nerrs, _ := p.failures()
	t.Logf("agent: %d samples (%d sampling errors); warm-up %s; after the warm-up means the median of its second half", len(all), nerrs, warmup.Round(time.Second))
	for _, m := range []struct {
		name    string
		measure func(procSample) int
	}{
		{"goroutines", func(s procSample) int { return s.goroutines }},
		{"  besides API conns", procSample.otherGoroutines},
		{"fds", func(s procSample) int { return s.fds }},
		{"  besides API conns", procSample.otherFDs},
		{"API conns", func(s procSample) int { return s.apiConns }},
		{"RSS kB", procSample.rss},
	} {
		after := statOf(post, m.measure)
		t.Logf("%-20s start %d, after the warm-up %d, end %d; after the warm-up min %d, max %d",
			m.name, statOf(all, m.measure).first, statOf(base, m.measure).median, statOf(all, m.measure).last, after.min, after.max)
	}
}
