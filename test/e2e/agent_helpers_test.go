package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// agent is a calico-cni-sync agent running as a process, on a node.
type agent struct {
	*harness.Process
	e    *env
	node string
	net  string
}

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
// cleanup (SIGTERM, a clean exit), and waits until it serves HTTP. The
// agent runs --rollout=immediate unless argv chooses a --rollout (see
// rolloutImmediateUnlessChosen).
func (e *env) launchAgentWith(environ []string, node, net string, argv []string) *agent {
	e.t.Helper()
	p, err := harness.StartProcess(rolloutImmediateUnlessChosen(argv), environ)
	must(e.t, err)
	a := &agent{Process: p, e: e, node: node, net: net}
	e.t.Cleanup(func() {
		a.stop()
		if e.t.Failed() {
			e.t.Logf("agent %s log:\n%s", node, tail(a.Output()))
		}
	})
	e.eventually(60*time.Second, "agent serving", a.Serving)
	return a
}

// rolloutImmediateUnlessChosen appends --rollout=immediate to an agent's
// command line that gives no --rollout. The tests change a ConfigMap and
// wait for the file to follow at once; under the default, waves, a node
// would wait for its wave (up to 40 minutes), paced on purpose. The
// rollout tests give --rollout themselves, and a test of what the shipped
// default does names --rollout=waves. argv ends with the agent's own
// arguments, also behind a wrapper that execs it.
func rolloutImmediateUnlessChosen(argv []string) []string {
	for _, a := range argv {
		if a == "--rollout" || strings.HasPrefix(a, "--rollout=") {
			return argv
		}
	}
	return append(slices.Clip(argv), "--rollout=immediate")
}

func (e *env) startAgentFor(node, net string, extra ...string) *agent {
	e.t.Helper()
	a := e.launchAgent(node, net, extra...)
	e.eventually(30*time.Second, "agent ready", func() error { return a.probe("/readyz") })
	return a
}

// stop sends SIGTERM and checks a clean exit, no temporary file left and
// no token logged.
func (a *agent) stop() {
	t := a.e.t
	if a.Cmd.ProcessState != nil {
		return
	}
	if err := a.Stop(); err != nil {
		t.Errorf("agent for %s %v\n%s", a.node, err, tail(a.Output()))
	}
	entries, _ := os.ReadDir(a.net)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
			t.Errorf("temporary file %s left in %s", en.Name(), a.net)
		}
	}
	a.e.noTokenIn(a.Output())
}

func tail(s string) string { return harness.Tail(s) }

func (a *agent) probe(path string) error { return a.Probe(path) }

// metric reads the sum of a metric's samples whose labels contain every
// given fragment.
func (a *agent) metric(name string, labelParts ...string) float64 {
	a.e.t.Helper()
	sum, err := a.Metric(name, labelParts...)
	must(a.e.t, err)
	a.e.t.Logf("%s%v = %v", name, labelParts, sum)
	return sum
}

// condition is the node's CalicoCNIConfigDrift condition.
func (e *env) condition(node string) (*corev1.NodeCondition, error) {
	return e.conditionOf(node, "CalicoCNIConfigDrift")
}

// conditionOf is the node's condition of a type.
func (e *env) conditionOf(node string, typ corev1.NodeConditionType) (*corev1.NodeCondition, error) {
	n, err := e.client.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i], nil
		}
	}
	return nil, fmt.Errorf("node %s has no %s condition", node, typ)
}

// waitHealthy waits for the node's CalicoCNICredentialHealthy condition to
// have the status and reason, and its message each fragment.
func (e *env) waitHealthy(node string, status corev1.ConditionStatus, reason string, msg ...string) *corev1.NodeCondition {
	e.t.Helper()
	return e.waitConditionOf(node, "CalicoCNICredentialHealthy", status, reason, msg...)
}

// waitCondition waits for the condition's status and reason, and for its
// message to contain each fragment.
func (e *env) waitCondition(node string, status corev1.ConditionStatus, reason string, msg ...string) *corev1.NodeCondition {
	e.t.Helper()
	return e.waitConditionOf(node, "CalicoCNIConfigDrift", status, reason, msg...)
}

// waitConditionOf waits for the node's condition of a type to have the
// status and reason, and its message each fragment; no message may hold a
// token.
func (e *env) waitConditionOf(node string, typ corev1.NodeConditionType, status corev1.ConditionStatus, reason string, msg ...string) *corev1.NodeCondition {
	e.t.Helper()
	var c *corev1.NodeCondition
	e.eventually(30*time.Second, fmt.Sprintf("%s %s/%s on %s", typ, status, reason, node), func() error {
		var err error
		if c, err = e.conditionOf(node, typ); err != nil {
			return err
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s is %s/%s: %s", typ, c.Status, c.Reason, c.Message)
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
