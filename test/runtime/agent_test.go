package runtime

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// agent is a calico-cni-sync agent running as a process.
type agent struct {
	*harness.Process
	e *env
}

var stateLabel = regexp.MustCompile(`state="([A-Za-z]+)"`)

// startAgent starts the agent for this env's node and waits until it is
// ready (its first reconcile reported). It is stopped at cleanup, if not
// before, and must exit 0 having logged no token. It runs
// --rollout=immediate: the tests change a ConfigMap and time it to the
// runtime's reload, which in waves (the default) would wait for the node's
// wave, paced on purpose.
func (e *env) startAgent(extra ...string) *agent {
	e.t.Helper()
	args := e.args(append(extra, "--status-file", filepath.Join(e.dir, "status.json"), "-v", "1", "--rollout=immediate")...)
	p, err := harness.StartProcess(append([]string{binary}, args...), procEnv())
	must(e.t, err)
	a := &agent{Process: p, e: e}
	e.t.Cleanup(func() {
		a.stop()
		if e.t.Failed() {
			e.t.Logf("agent log:\n%s", harness.Tail(a.Output()))
		}
	})
	e.eventually(30*time.Second, "agent ready", func() error {
		if err := a.Serving(); err != nil {
			return err
		}
		return a.Probe("/readyz")
	})
	return a
}

// stop sends SIGTERM and checks a clean exit; it is idempotent.
func (a *agent) stop() {
	if a.Cmd.ProcessState != nil {
		return
	}
	if err := a.Stop(); err != nil {
		a.e.t.Errorf("agent %v\n%s", err, harness.Tail(a.Output()))
	}
	a.e.noTokenIn(a.Output())
}

// metric is the sum of a metric's samples whose labels contain every given
// fragment.
func (a *agent) metric(name string, labelParts ...string) float64 {
	a.e.t.Helper()
	sum, err := a.Metric(name, labelParts...)
	must(a.e.t, err)
	return sum
}

// verdict is the running agent's last judgement of a file (the state its
// file_state metric holds at 1) and how many reconciles it has made.
func (a *agent) verdict(file string) (reconciles int, state string) {
	a.e.t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/metrics")
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
