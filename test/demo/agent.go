package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// agent is a calico-cni-sync node agent the demo runs as a process, as a
// DaemonSet's pod would run it: its log goes to a file and its /metrics is
// found from the address it logs at start.
type agent struct {
	cmd  *exec.Cmd
	log  string
	addr string // host:port of /metrics, /healthz and /readyz
}

// httpAddr is the address the agent logs at start ("starting ... http=...").
var httpAddr = regexp.MustCompile(`http=(127\.0\.0\.1:\d+)`)

// startAgent starts the binary with args (plus --http-addr 127.0.0.1:0) and
// env, logging to logPath, and waits until it has logged where it serves.
func startAgent(ctx context.Context, binary string, args, env []string, logPath string) (*agent, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	a := &agent{cmd: exec.Command(binary, append(args, "--http-addr", "127.0.0.1:0")...), log: logPath}
	a.cmd.Env = env
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	err = waitFor(ctx, "the agent logs its --http-addr", func() bool {
		b, _ := os.ReadFile(logPath)
		if m := httpAddr.FindSubmatch(b); m != nil {
			a.addr = string(m[1])
		}
		return a.addr != ""
	})
	if err != nil {
		a.stop("The agent did not start")
		return nil, err
	}
	return a, nil
}

// stop sends SIGTERM, waits for the exit and prints the last lines of the
// log (tokens redacted, though the agent never logs one).
func (a *agent) stop(title string) {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	err := a.cmd.Wait()
	status := "exit 0"
	if err != nil {
		status = err.Error()
	}
	fmt.Printf("\n== %s (SIGTERM: %s); the last lines of its log:\n", title, status)
	b, _ := os.ReadFile(a.log)
	lines := strings.Split(strings.TrimSpace(cniconf.Redact(string(b))), "\n")
	for _, l := range lines[max(0, len(lines)-8):] {
		fmt.Println("   " + l)
	}
}

// metric sums the samples of a metric on the agent's /metrics whose labels
// include every one given (file="..." and so on). A metric with no sample
// yet is 0.
func (a *agent) metric(ctx context.Context, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		series, value, ok := cutLast(line, " ")
		if !ok || !hasLabels(series, labels) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// hasLabels reports whether a series names every label (`file="/x"`).
func hasLabels(series string, labels []string) bool {
	for _, l := range labels {
		if !strings.Contains(series, l) {
			return false
		}
	}
	return true
}

// label is one label as the exposition format writes it.
func label(name, value string) string { return name + "=" + strconv.Quote(value) }
