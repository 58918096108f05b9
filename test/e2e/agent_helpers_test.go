package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// agent is a calico-cni-sync agent running as a process.
type agent struct {
	e    *env
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	addr string
	done chan error
	node string
	net  string
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

var httpAddr = regexp.MustCompile(`http=(127\.0\.0\.1:\d+)`)

// startAgent starts the agent for this env's node and waits for it to be
// ready. It is stopped with SIGTERM at cleanup, and must exit 0, leave no
// temporary file and have logged no token.
func (e *env) startAgent(extra ...string) *agent {
	return e.startAgentFor(e.node, e.net, extra...)
}

// launchAgent starts the agent and waits only until it serves HTTP.
func (e *env) launchAgent(node, net string, extra ...string) *agent {
	e.t.Helper()
	args := e.args(extra...)
	args = append(args, "--node-name", node, "--cni-net-dir", net,
		"--state-dir", filepath.Join(net, "..", "state-"+node), "--backup-dir", filepath.Join(net, "..", "backups-"+node),
		"--status-file", filepath.Join(net, "..", "status-"+node+".json"), "-v", "1")
	return e.launchAgentWith(procEnv(), node, net, append([]string{binary}, args...))
}

// launchAgentWith starts the agent by this command line (the binary and
// its args, or a wrapper that runs it) and environment, stops it at
// cleanup (SIGTERM, a clean exit), and waits until it serves HTTP.
func (e *env) launchAgentWith(environ []string, node, net string, argv []string) *agent {
	e.t.Helper()
	a := &agent{e: e, node: node, net: net, done: make(chan error, 1)}
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Env = environ
	a.cmd.Stdout, a.cmd.Stderr = a, a
	must(e.t, a.cmd.Start())
	go func() { a.done <- a.cmd.Wait() }()
	e.t.Cleanup(func() {
		a.stop()
		if e.t.Failed() {
			e.t.Logf("agent %s log:\n%s", node, tail(a.output()))
		}
	})
	e.eventually(60*time.Second, "agent serving", func() error {
		if m := httpAddr.FindStringSubmatch(a.output()); m != nil {
			a.addr = m[1]
			return nil
		}
		select {
		case err := <-a.done:
			a.done <- err
			return fmt.Errorf("agent exited: %v\n%s", err, a.output())
		default:
		}
		return fmt.Errorf("no http address logged yet")
	})
	return a
}

func (e *env) startAgentFor(node, net string, extra ...string) *agent {
	e.t.Helper()
	a := e.launchAgent(node, net, extra...)
	e.eventually(30*time.Second, "agent ready", func() error { return a.probe("/readyz") })
	return a
}

// stop sends SIGTERM and checks a clean exit.
func (a *agent) stop() {
	t := a.e.t
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent for %s exited with %v after SIGTERM\n%s", a.node, err, tail(a.output()))
		}
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Errorf("agent for %s did not stop within 15s of SIGTERM", a.node)
	}
	entries, _ := os.ReadDir(a.net)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
			t.Errorf("temporary file %s left in %s", en.Name(), a.net)
		}
	}
	a.e.noTokenIn(a.output())
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
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

// metric reads the sum of a metric's samples whose labels contain every
// given fragment.
func (a *agent) metric(name string, labelParts ...string) float64 {
	a.e.t.Helper()
	sum, err := measure.Metric(http.DefaultClient, a.addr, name, labelParts...)
	must(a.e.t, err)
	a.e.t.Logf("%s%v = %v", name, labelParts, sum)
	return sum
}

// condition is the node's CalicoCNIConfigDrift condition.
func (e *env) condition(node string) (*corev1.NodeCondition, error) {
	n, err := e.client.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == "CalicoCNIConfigDrift" {
			return &n.Status.Conditions[i], nil
		}
	}
	return nil, fmt.Errorf("node %s has no CalicoCNIConfigDrift condition", node)
}

// waitCondition waits for the condition's status and reason, and for its
// message to contain each fragment.
func (e *env) waitCondition(node string, status corev1.ConditionStatus, reason string, msg ...string) *corev1.NodeCondition {
	e.t.Helper()
	var c *corev1.NodeCondition
	e.eventually(30*time.Second, fmt.Sprintf("condition %s/%s on %s", status, reason, node), func() error {
		var err error
		if c, err = e.condition(node); err != nil {
			return err
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("condition is %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		for _, m := range msg {
			if !strings.Contains(c.Message, m) {
				return fmt.Errorf("message %q lacks %q", c.Message, m)
			}
		}
		return nil
	})
	e.noTokenIn(c.Message)
	return c
}

// events lists the node's events with a reason.
func (e *env) events(node, reason string) []corev1.Event {
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": node, "reason": reason}.AsSelector().String()
	list, err := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil
	}
	for _, ev := range list.Items {
		e.noTokenIn(ev.Message)
	}
	return list.Items
}

// waitEvent waits for an event with the reason whose message contains msg.
func (e *env) waitEvent(node, reason, msg string) corev1.Event {
	e.t.Helper()
	var found corev1.Event
	e.eventually(30*time.Second, "event "+reason, func() error {
		for _, ev := range e.events(node, reason) {
			if strings.Contains(ev.Message, msg) {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("no %s event mentioning %q", reason, msg)
	})
	return found
}

// waitFile waits until a file on the node satisfies check.
func (e *env) waitFile(net, name, what string, check func(content string) bool) {
	e.t.Helper()
	e.eventually(30*time.Second, name+": "+what, func() error {
		b, err := os.ReadFile(filepath.Join(net, name))
		if err != nil {
			return err
		}
		if !check(string(b)) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// addNode creates another Node for this env.
func (e *env) addNode(suffix string) string {
	e.t.Helper()
	name := e.node + "-" + suffix
	_, err := e.client.CoreV1().Nodes().Create(e.ctx, linuxNode(name), metav1.CreateOptions{})
	must(e.t, err)
	e.t.Cleanup(func() { _ = e.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// linuxNode is a Node as the kubelet registers one, with the os label the
// agent's DaemonSet (and report) select on.
func linuxNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
}
