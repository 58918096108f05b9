package harness

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
)

// Process is a calico-cni-sync agent running as a process.
type Process struct {
	Cmd *exec.Cmd
	// Done receives the exit once; a reader that only looks puts it back.
	Done chan error

	mu   sync.Mutex
	logs bytes.Buffer
	addr string
}

// StartProcess starts argv (the binary and its args, or a wrapper that runs
// it) with environ, its output kept as its log.
func StartProcess(argv, environ []string) (*Process, error) {
	p := &Process{Done: make(chan error, 1)}
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Env = environ
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.Done <- p.Cmd.Wait() }()
	return p, nil
}

// Write keeps the process's output.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

// Output is the log so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

var httpAddr = regexp.MustCompile(`http=(127\.0\.0\.1:\d+)`)

// Serving is nil once the agent has logged the address it serves its
// probes on, and says why not before (it exited, or has not yet).
func (p *Process) Serving() error {
	select {
	case err := <-p.Done:
		p.Done <- err
		return fmt.Errorf("agent exited: %v\n%s", err, p.Output())
	default:
	}
	if p.Addr() == "" {
		return fmt.Errorf("no http address logged yet")
	}
	return nil
}

// Addr is the address of the agent's probes and metrics, "" until logged.
func (p *Process) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == "" {
		if m := httpAddr.FindStringSubmatch(p.logs.String()); m != nil {
			p.addr = m[1]
		}
	}
	return p.addr
}

// Probe GETs one of the agent's probes.
func (p *Process) Probe(path string) error {
	resp, err := http.Get("http://" + p.Addr() + path)
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

// Metric is the sum of a metric's samples whose labels contain every given
// fragment.
func (p *Process) Metric(name string, labelParts ...string) (float64, error) {
	return measure.Metric(http.DefaultClient, p.Addr(), name, labelParts...)
}

// Stop sends SIGTERM and waits up to 15 s for a clean exit; it does
// nothing to a process that has exited.
func (p *Process) Stop() error {
	if p.Cmd.ProcessState != nil {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.Done:
		p.Done <- err
		if err != nil {
			return fmt.Errorf("exited with %v after SIGTERM", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		return fmt.Errorf("did not stop within 15s of SIGTERM")
	}
}

// Tail is the last 40 lines of a log.
func Tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
