package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
)

// agent is a calico-cni-sync agent running as a process.
type agent struct {
	e    *env
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	addr string
	done chan error
}

func (a *agent) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.Write(p)
}

func (a *agent) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

var (
	httpAddr   = regexp.MustCompile(`http=(127\.0\.0\.1:\d+)`)
	stateLabel = regexp.MustCompile(`state="([A-Za-z]+)"`)
)

// startAgent starts the agent for this env's node and waits until it is
// ready (its first reconcile reported). It is stopped at cleanup, if not
// before, and must exit 0 having logged no token.
func (e *env) startAgent(extra ...string) *agent {
	e.t.Helper()
	a := &agent{e: e, done: make(chan error, 1)}
	a.cmd = exec.Command(binary, e.args(append(extra, "--status-file", filepath.Join(e.dir, "status.json"), "-v", "1")...)...)
	a.cmd.Env = procEnv()
	a.cmd.Stdout, a.cmd.Stderr = a, a
	must(e.t, a.cmd.Start())
	go func() { a.done <- a.cmd.Wait() }()
	e.t.Cleanup(func() {
		a.stop()
		if e.t.Failed() {
			e.t.Logf("agent log:\n%s", tail(a.output()))
		}
	})
	e.eventually(30*time.Second, "agent ready", func() error {
		select {
		case err := <-a.done:
			a.done <- err
			return fmt.Errorf("agent exited: %v\n%s", err, a.output())
		default:
		}
		if a.addr == "" {
			m := httpAddr.FindStringSubmatch(a.output())
			if m == nil {
				return fmt.Errorf("no http address logged yet")
			}
			a.addr = m[1]
		}
		return a.probe("/readyz")
	})
	return a
}

// stop sends SIGTERM and checks a clean exit; it is idempotent.
func (a *agent) stop() {
	t := a.e.t
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM\n%s", err, tail(a.output()))
		}
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Errorf("agent did not stop within 15s of SIGTERM")
	}
	a.e.noTokenIn(a.output())
}

func (a *agent) probe(path string) error {
	resp, err := http.Get("http://" + a.addr + path)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
	}
	return nil
}

// metric is the sum of a metric's samples whose labels contain every given
// fragment.
func (a *agent) metric(name string, labelParts ...string) float64 {
	a.e.t.Helper()
	sum, err := measure.Metric(http.DefaultClient, a.addr, name, labelParts...)
	must(a.e.t, err)
	return sum
}

// verdict is the running agent's last judgement of a file (the state its
// file_state metric holds at 1) and how many reconciles it has made.
func (a *agent) verdict(file string) (reconciles int, state string) {
	a.e.t.Helper()
	resp, err := http.Get("http://" + a.addr + "/metrics")
	must(a.e.t, err)
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "calico_cni_sync_reconciles_total{"):
			v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			reconciles += int(v)
		case strings.HasPrefix(line, "calico_cni_sync_file_state{") && strings.Contains(line, `file="`+file+`"`) && strings.HasSuffix(line, " 1"):
			if m := stateLabel.FindStringSubmatch(line); m != nil {
				state = m[1]
			}
		}
	}
	return reconciles, state
}

// verdictAfter waits for a reconcile beyond the count before, and returns
// the agent's judgement of file from a scrape made after it: the verdict
// on the directory as it is now, when it changed while the agent was idle.
func (a *agent) verdictAfter(file string, before int) string {
	a.e.t.Helper()
	a.e.eventually(30*time.Second, "a reconcile after "+strconv.Itoa(before), func() error {
		if n, _ := a.verdict(file); n <= before {
			return fmt.Errorf("%d reconciles", n)
		}
		return nil
	})
	_, state := a.verdict(file)
	return state
}
