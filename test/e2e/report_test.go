package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reportRow is one node as report prints it, in either format.
type reportRow struct {
	Name    string     `json:"name"`
	State   string     `json:"state"`
	Reason  string     `json:"reason"`
	Message string     `json:"message"`
	Since   *time.Time `json:"since"`
}

// setCondition patches a Node's CalicoCNIConfigDrift condition as the agent
// does (a strategic merge of status.conditions, keyed by type), for states an
// agent does not hold still long enough to test: it rewrites a StaleToken
// file at once, and is not ready while its inputs are in Error.
func (e *env) setCondition(node string, status corev1.ConditionStatus, reason, msg string, since time.Time) {
	e.t.Helper()
	at := metav1.NewTime(since)
	c := corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: status, Reason: reason, Message: msg, LastHeartbeatTime: at, LastTransitionTime: at}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{c}}})
	must(e.t, err)
	_, err = e.client.CoreV1().Nodes().PatchStatus(e.ctx, node, patch)
	must(e.t, err)
}

// setLease writes the Lease an agent with the default resync period (5m)
// renews, as of at.
func (e *env) setLease(node string, at time.Time) {
	e.t.Helper()
	e.setLeaseIn("kube-system", node, at, 5*time.Minute)
}

// setLeaseIn writes, in namespace, the Lease an agent with the resync
// period renews, as of at: its duration is twice the period.
func (e *env) setLeaseIn(namespace, node string, at time.Time, period time.Duration) {
	e.t.Helper()
	renew, secs := metav1.NewMicroTime(at), int32(2*period/time.Second)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-cni-sync-" + node, Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: &secs, RenewTime: &renew},
	}
	leases := e.client.CoordinationV1().Leases(namespace)
	_, err := leases.Create(e.ctx, lease, metav1.CreateOptions{})
	must(e.t, err)
	e.t.Cleanup(func() { _ = leases.Delete(context.Background(), lease.Name, metav1.DeleteOptions{}) })
}

// reportText runs report and parses its table, keeping the rows of nodes.
func (e *env) reportText(nodes []string) (int, []reportRow) {
	e.t.Helper()
	code, out := e.run(e.args("report")...)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"NODE", "STATE", "REASON", "SINCE", "MESSAGE"}) {
		e.t.Fatalf("report header %q\n%s", lines[0], out)
	}
	var rows []reportRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 3 || !slices.Contains(nodes, f[0]) {
			continue
		}
		r := reportRow{Name: f[0], State: f[1]}
		since := f[2]
		if len(f) > 3 { // a condition: reason, since, message
			r.Reason, since, r.Message = f[2], f[3], strings.Join(f[4:], " ")
		}
		if since != "-" {
			ts, err := time.Parse(time.RFC3339, since)
			if err != nil {
				e.t.Fatalf("SINCE %q of %s: %v", since, f[0], err)
			}
			r.Since = &ts
		}
		rows = append(rows, r)
	}
	return code, rows
}

// reportJSON runs report -o json, checks the document has exactly the
// contract's fields, and keeps the rows of nodes.
func (e *env) reportJSON(nodes []string) (int, []reportRow) {
	e.t.Helper()
	return e.reportJSONWith(nodes, e.args("report", "-o", "json")...)
}

// reportJSONWith is reportJSON with the command line args.
func (e *env) reportJSONWith(nodes []string, args ...string) (int, []reportRow) {
	e.t.Helper()
	code, out := e.run(args...)
	var loose struct{ Nodes []map[string]any }
	must(e.t, json.Unmarshal([]byte(out), &loose))
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	var doc struct {
		Nodes []reportRow `json:"nodes"`
	}
	if err := dec.Decode(&doc); err != nil {
		e.t.Fatalf("report -o json: %v\n%s", err, out)
	}
	var rows []reportRow
	for i, r := range doc.Nodes {
		if len(loose.Nodes[i]) != 5 {
			e.t.Errorf("node %s has fields %v, want name, state, reason, message, since", r.Name, loose.Nodes[i])
		}
		if slices.Contains(nodes, r.Name) {
			rows = append(rows, r)
		}
	}
	return code, rows
}

// TestReport: report on the real control plane with nodes in every kind of
// state. InSync and Drifted are real (agents and a hand edit); StaleToken
// and Error are conditions patched as the agent writes them; one node never
// had an agent. Other tests' Nodes are left out of the assertions, except
// for exit code 0, which needs every Node in the cluster InSync.
func TestReport(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	inSync, drifted := e.node, e.addNode("drifted")
	stale, failed, bare := e.addNode("stale"), e.addNode("error"), e.addNode("bare")
	mine := []string{inSync, drifted, stale, failed, bare}

	e.startAgent()
	driftNet := filepath.Join(e.dir, drifted, "net.d")
	must(t, os.MkdirAll(driftNet, 0o755))
	e.startAgentFor(drifted, driftNet)
	e.waitCondition(inSync, corev1.ConditionFalse, "InSync")
	e.waitCondition(drifted, corev1.ConditionFalse, "InSync")
	conf := filepath.Join(driftNet, "10-calico.conflist")
	original, err := os.ReadFile(conf)
	must(t, err)
	must(t, os.WriteFile(conf, bytes.Replace(original, []byte(`"mtu": 0`), []byte(`"mtu": 1400`), 1), 0o644))
	e.waitCondition(drifted, corev1.ConditionTrue, "Drifted", "plugins.0.mtu")

	staleSince := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	failedSince := staleSince.Add(time.Hour)
	e.setCondition(stale, corev1.ConditionTrue, "StaleToken",
		"/etc/cni/net.d/calico-kubeconfig is StaleToken; direct edits are overwritten from the ConfigMap when calico-node restarts", staleSince)
	e.setCondition(failed, corev1.ConditionUnknown, "Error", "/etc/cni/net.d/10-calico.conflist is Error: ConfigMap kube-system/calico-config not found", failedSince)
	// Their agents are alive: Leases renewed now.
	e.setLease(stale, time.Now())
	e.setLease(failed, time.Now())
	// An agent gone an hour ago: its last word was InSync, and its Lease is
	// an hour old (twice the default resync period is 10 minutes).
	gone := e.addNode("gone")
	mine = append(mine, gone)
	e.setCondition(gone, corev1.ConditionFalse, "InSync", "the CNI files match", failedSince)
	e.setLease(gone, time.Now().Add(-time.Hour))
	// A Windows node, which the agent's DaemonSet does not select.
	windows := e.addNode("windows")
	node, err := e.client.CoreV1().Nodes().Get(e.ctx, windows, metav1.GetOptions{})
	must(t, err)
	node.Labels["kubernetes.io/os"] = "windows"
	_, err = e.client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
	must(t, err)
	mine = append(mine, windows)

	check := func(format string, code int, rows []reportRow) {
		t.Helper()
		if code != 1 {
			t.Errorf("%s: exit %d with problems, want 1", format, code)
		}
		var order []string
		byName := map[string]reportRow{}
		for _, r := range rows {
			order, byName[r.Name] = append(order, r.Name), r
		}
		// Problems first, the most severe first, then nodes with no
		// condition, then InSync.
		if want := []string{failed, drifted, stale, gone, bare, inSync}; !reflect.DeepEqual(order, want) {
			t.Errorf("%s: order %v, want %v", format, order, want)
		}
		for name, want := range map[string][2]string{
			inSync: {"InSync", "InSync"}, drifted: {"Drifted", "Drifted"}, stale: {"StaleToken", "StaleToken"},
			failed: {"Error", "Error"}, bare: {"Unknown", ""}, gone: {"Stale", "InSync"},
		} {
			if r := byName[name]; r.State != want[0] || r.Reason != want[1] {
				t.Errorf("%s: %s is %s/%s, want %s/%s", format, name, r.State, r.Reason, want[0], want[1])
			}
		}
		if r := byName[drifted]; !strings.Contains(r.Message, "plugins.0.mtu") || r.Since == nil {
			t.Errorf("%s: drifted row %+v", format, r)
		}
		if r := byName[failed]; !strings.Contains(r.Message, "calico-config not found") || r.Since == nil || !r.Since.Equal(failedSince) {
			t.Errorf("%s: error row %+v, want since %s", format, r, failedSince)
		}
		if r := byName[stale]; r.Since == nil || !r.Since.Equal(staleSince) {
			t.Errorf("%s: stale row %+v, want since %s", format, r, staleSince)
		}
		if r := byName[gone]; !strings.Contains(r.Message, "Lease") {
			t.Errorf("%s: a gone agent's row does not say why it is Stale: %+v", format, r)
		}
		if r := byName[bare]; r.Since != nil || r.Message != "" {
			t.Errorf("%s: a node without the condition shows %+v", format, r)
		}
	}
	code, rows := e.reportText(mine)
	check("text", code, rows)
	code, rows = e.reportJSON(mine)
	check("json", code, rows)

	// Every node InSync: the hand edit undone, the other nodes gone.
	must(t, os.WriteFile(conf, original, 0o644))
	e.waitCondition(drifted, corev1.ConditionFalse, "InSync")
	for _, n := range []string{stale, failed, bare, gone, windows} {
		must(t, e.client.CoreV1().Nodes().Delete(e.ctx, n, metav1.DeleteOptions{}))
	}
	e.eventually(30*time.Second, "only this test's InSync nodes left", func() error {
		nodes, err := e.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		var names []string
		for _, n := range nodes.Items {
			names = append(names, n.Name)
		}
		if slices.Sort(names); !reflect.DeepEqual(names, []string{inSync, drifted}) {
			return errorf("the cluster has Nodes %v; another test left some behind", names)
		}
		return nil
	})
	for _, format := range []string{"text", "json"} {
		var code int
		var rows []reportRow
		if format == "text" {
			code, rows = e.reportText(mine)
		} else {
			code, rows = e.reportJSON(mine)
		}
		if code != 0 || len(rows) != 2 || rows[0].State != "InSync" || rows[1].State != "InSync" {
			t.Errorf("%s with every node InSync: exit %d, rows %+v", format, code, rows)
		}
	}
}

// TestReportJudgesALeaseByItsDuration: an agent run with
// --resync-period=15m renews its Lease every 15 minutes, with a duration of
// 30. Twenty minutes after a renewal it is alive, though twice report's own
// default period (10 minutes) has passed; a Lease past its own duration is
// Stale. The agents' Leases here are in a namespace of their own, which
// report reads with --lease-namespace.
func TestReportJudgesALeaseByItsDuration(t *testing.T) {
	e := newStuckEnv(t)
	slow, gone := e.addNode("slow"), e.addNode("gone")
	mine := []string{slow, gone}
	for _, n := range mine {
		e.setCondition(n, corev1.ConditionFalse, "InSync", "the CNI files match", time.Now().Add(-time.Hour))
	}
	renewed := time.Now().Add(-20 * time.Minute)
	e.setLeaseIn(e.ns, slow, renewed, 15*time.Minute)
	e.setLeaseIn(e.ns, gone, renewed, 5*time.Minute)

	states := func(args ...string) map[string]string {
		t.Helper()
		code, rows := e.reportJSONWith(mine, append([]string{"report", "--kubeconfig", e.kubeconfig, "-o", "json"}, args...)...)
		if code == 2 {
			t.Fatalf("report %v: exit 2", args)
		}
		got := map[string]string{}
		for _, r := range rows {
			got[r.Name] = r.State
		}
		return got
	}
	if got, want := states("--lease-namespace", e.ns), map[string]string{slow: "InSync", gone: "Stale"}; !reflect.DeepEqual(got, want) {
		t.Errorf("report --lease-namespace %s: %v, want %v", e.ns, got, want)
	}
	// Elsewhere (the default, kube-system, with no POD_NAMESPACE) there is
	// no Lease of theirs: both agents are gone as far as report can tell.
	if got, want := states(), map[string]string{slow: "Stale", gone: "Stale"}; !reflect.DeepEqual(got, want) {
		t.Errorf("report without --lease-namespace: %v, want %v", got, want)
	}
}
