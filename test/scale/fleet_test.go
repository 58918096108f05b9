package scale

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
)

// node is one simulated node: its Node name, its directories and the agent
// process that keeps its CNI files.
type node struct {
	index   int
	name    string
	dir     string // the node's root: net.d, state, backups, status.json, agent.log
	net     string
	uid     int
	cmd     *exec.Cmd
	done    chan error
	logFile *os.File
	addr    string // the agent's HTTP address, read from its log
}

func (n *node) statusPath() string { return filepath.Join(n.dir, "status.json") }
func (n *node) logPath() string    { return filepath.Join(n.dir, "agent.log") }

// firstUID is the first of the user ids the agents run as, one each. The
// kernel counts inotify instances per user (128 by default): 200 agents
// under one user would run out, and would take them from anything else
// running as root on this machine. On a real cluster each agent is alone
// on its node.
const firstUID = 41000

// newNode makes the node's directories, owned by the agent's user. Run by
// another user than root, the agents run as that user (then the inotify
// limit caps N near 120).
func newNode(root, fleet string, i int) (*node, error) {
	n := &node{index: i, name: fmt.Sprintf("scale-%s-%d", fleet, i), uid: firstUID + i}
	if os.Geteuid() != 0 {
		n.uid = os.Geteuid()
	}
	n.dir = filepath.Join(root, n.name)
	n.net = filepath.Join(n.dir, "net.d")
	for _, d := range []string{n.dir, n.net} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := n.own(d); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// own gives path to the agent's user.
func (n *node) own(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chown(path, n.uid, n.uid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// start launches the agent as the node's user, its output to a log file.
func (n *node) start(binary string, env, args []string) error {
	f, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	n.logFile = f
	n.cmd = exec.Command(binary, args...)
	n.cmd.Env = env
	n.cmd.Dir = n.dir
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if os.Geteuid() == 0 {
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(n.uid), Gid: uint32(n.uid), NoSetGroups: true}}
	}
	if err := n.cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start agent %s: %w", n.name, err)
	}
	n.done = make(chan error, 1)
	go func() { n.done <- n.cmd.Wait() }()
	return nil
}

// stop sends SIGTERM and, after grace, SIGKILL; it returns the exit error
// of a SIGTERMed agent (nil: a clean exit).
func (n *node) stop(grace time.Duration) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	defer func() { _ = n.logFile.Close() }()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.cmd = nil
		return err
	case <-time.After(grace):
		_ = n.cmd.Process.Kill()
		_ = n.wait()
		n.cmd = nil
		return fmt.Errorf("agent %s did not stop within %v of SIGTERM", n.name, grace)
	}
}

// wait returns the agent's exit once it has exited.
func (n *node) wait() error { return <-n.done }

// exited reports an agent that is gone, with the end of its log.
func (n *node) exited() error {
	select {
	case err := <-n.done:
		n.done <- err
		return fmt.Errorf("agent %s exited: %v\n%s", n.name, err, n.logTail())
	default:
		return nil
	}
}

func (n *node) logTail() string {
	b, _ := os.ReadFile(n.logPath())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

var httpAddr = regexp.MustCompile(`http=(127\.0\.0\.1:\d+)`)

// httpAddress reads the agent's address from its log (it listens on port 0).
func (n *node) httpAddress() (string, error) {
	if n.addr != "" {
		return n.addr, nil
	}
	b, err := os.ReadFile(n.logPath())
	if err != nil {
		return "", err
	}
	m := httpAddr.FindSubmatch(b)
	if m == nil {
		return "", errors.New("no http address logged yet")
	}
	n.addr = string(m[1])
	return n.addr, nil
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// metric is the sum of a metric's samples on the agent's /metrics.
func (n *node) metric(name string) (float64, error) {
	addr, err := n.httpAddress()
	if err != nil {
		return 0, err
	}
	return measure.Metric(metricsClient, addr, name)
}
