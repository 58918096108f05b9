package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// rolloutDoc is report --rollout -o json, decoded strictly: a field the
// reference does not list fails the test.
type rolloutDoc struct {
	Newest    string `json:"newest"`
	Nodes     int    `json:"nodes"`
	Revisions []struct {
		Revision  string         `json:"revision"`
		FirstSeen time.Time      `json:"firstSeen"`
		Nodes     map[string]int `json:"nodes"`
		Waiting   []rolloutNode  `json:"waiting"`
		Paused    []rolloutNode  `json:"paused"`
		Halted    []rolloutNode  `json:"halted"`
		// RolledBack as the others.
		RolledBack []rolloutNode `json:"rolledBack"`
	} `json:"revisions"`
	NoState []struct {
		Node    string         `json:"node"`
		Why     string         `json:"why"`
		Message string         `json:"message"`
		Last    *rollout.State `json:"last"`
	} `json:"noState"`
}

type rolloutNode struct {
	Node   string    `json:"node"`
	Wave   int       `json:"wave"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// setRolloutLease writes, in the env's namespace, the Lease of node's agent
// renewed at renewed, with the rollout state an agent publishes (none when
// s is nil), as the agent's Lease carries it.
func (e *env) setRolloutLease(node string, renewed time.Time, s *rollout.State) {
	e.t.Helper()
	leases := e.client.CoordinationV1().Leases(e.ns)
	name := "calico-cni-sync-" + node
	l, err := leases.Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		secs := int32(600)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: &secs},
		}
	}
	renew := metav1.NewMicroTime(renewed)
	l.Spec.RenewTime = &renew
	l.Annotations = nil
	if s != nil {
		v, err := s.Encode()
		must(e.t, err)
		l.Annotations = map[string]string{rollout.StateAnnotation: v}
	}
	if l.ResourceVersion == "" {
		_, err = leases.Create(e.ctx, l, metav1.CreateOptions{})
		e.t.Cleanup(func() { _ = leases.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	} else {
		_, err = leases.Update(e.ctx, l, metav1.UpdateOptions{})
	}
	must(e.t, err)
}

// TestReportRollout: report --rollout on the real control plane, reading
// Leases written as agents write them: two nodes applied the newest
// revision, one waits for its wave, one is halted with the gate's evidence,
// one still runs the revision before, one has no Lease and one a Stale
// Lease. Then every node applies the newest revision, and then none
// publishes a state: exit 1, 0 and 0.
func TestReportRollout(t *testing.T) {
	e := newStuckEnv(t)
	label := "rollout-test-" + e.ns
	nodes := map[string]string{}
	for _, n := range []string{"a1", "a2", "wait", "halt", "old", "nolease", "gone"} {
		nodes[n] = e.addNode(n)
		node, err := e.client.CoreV1().Nodes().Get(e.ctx, nodes[n], metav1.GetOptions{})
		must(t, err)
		node.Labels[label] = "yes"
		_, err = e.client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
		must(t, err)
	}
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	oldRev, newRev := "sha256:1111111111111111", "sha256:2222222222222222"
	evidence := "node " + nodes["a1"] + ": FailedCreatePodSandBox after the change (3 in 2m)"
	now := time.Now()
	e.setRolloutLease(nodes["a1"], now, &rollout.State{Revision: newRev, Phase: rollout.Applied, Since: t0.Add(30 * time.Minute)})
	e.setRolloutLease(nodes["a2"], now, &rollout.State{Revision: newRev, Phase: rollout.Applied, Wave: 1, Since: t0.Add(40 * time.Minute)})
	e.setRolloutLease(nodes["wait"], now, &rollout.State{Revision: newRev, Phase: rollout.Waiting, Wave: 2, Since: t0.Add(30 * time.Minute), Reason: "wave 2 opens at 12:00"})
	e.setRolloutLease(nodes["halt"], now, &rollout.State{Revision: newRev, Phase: rollout.Halted, Wave: 1, Since: t0.Add(45 * time.Minute), Reason: evidence})
	e.setRolloutLease(nodes["old"], now, &rollout.State{Revision: oldRev, Phase: rollout.Applied, Since: t0})
	e.setRolloutLease(nodes["gone"], now.Add(-time.Hour), &rollout.State{Revision: newRev, Phase: rollout.Applied, Since: t0.Add(30 * time.Minute)})
	args := []string{"report", "--rollout", "--kubeconfig", e.kubeconfig, "--lease-namespace", e.ns, "-l", label + "=yes"}

	jsonReport := func() (int, rolloutDoc, string) {
		t.Helper()
		code, out := e.run(append(args, "-o", "json")...)
		dec := json.NewDecoder(bytes.NewReader([]byte(out)))
		dec.DisallowUnknownFields()
		var doc rolloutDoc
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("report --rollout -o json (exit %d): %v\n%s", code, err, out)
		}
		return code, doc, out
	}
	code, doc, out := jsonReport()
	t.Logf("report --rollout -o json:\n%s", out)
	if code != 1 {
		t.Errorf("exit %d with a node halted and one waiting, want 1", code)
	}
	if doc.Newest != newRev || doc.Nodes != 7 || len(doc.Revisions) != 2 || doc.Revisions[0].Revision != newRev || doc.Revisions[1].Revision != oldRev {
		t.Fatalf("newest %q, %d nodes, revisions %+v: want %s newest of 7 nodes, then %s", doc.Newest, doc.Nodes, doc.Revisions, newRev, oldRev)
	}
	r := doc.Revisions[0]
	if want := map[string]int{"applied": 2, "waiting": 1, "paused": 0, "halted": 1, "rolledBack": 0}; !equalCounts(r.Nodes, want) {
		t.Errorf("counts of the newest revision %v, want %v", r.Nodes, want)
	}
	if len(r.Halted) != 1 || r.Halted[0].Node != nodes["halt"] || r.Halted[0].Reason != evidence || r.Halted[0].Wave != 1 || !r.Halted[0].Since.Equal(t0.Add(45*time.Minute)) {
		t.Errorf("halted %+v, want %s in wave 1 with the gate's evidence", r.Halted, nodes["halt"])
	}
	if len(r.Waiting) != 1 || r.Waiting[0].Node != nodes["wait"] || r.Waiting[0].Wave != 2 {
		t.Errorf("waiting %+v, want %s in wave 2", r.Waiting, nodes["wait"])
	}
	if !r.FirstSeen.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("first seen %s, want %s", r.FirstSeen, t0.Add(30*time.Minute))
	}
	if got := doc.Revisions[1].Nodes["applied"]; got != 1 {
		t.Errorf("nodes that applied %s: %d, want 1", oldRev, got)
	}
	why := map[string]string{}
	for _, u := range doc.NoState {
		why[u.Node] = u.Why
		if u.Why == "staleLease" && (u.Last == nil || u.Last.Revision != newRev) {
			t.Errorf("the Stale Lease's last word %+v, want applied %s", u.Last, newRev)
		}
	}
	if len(why) != 2 || why[nodes["nolease"]] != "noLease" || why[nodes["gone"]] != "staleLease" {
		t.Errorf("no state %v, want %s noLease and %s staleLease", why, nodes["nolease"], nodes["gone"])
	}

	code, text := e.run(args...)
	t.Logf("report --rollout:\n%s", text)
	if code != 1 {
		t.Errorf("text: exit %d, want 1", code)
	}
	for _, want := range []string{
		"revision " + newRev + " (newest)", "4 nodes; 2 applied, 1 waiting, 0 paused, 1 halted, 0 rolled back",
		"revision " + oldRev + ", first seen", "no rollout state: 2 nodes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	for _, row := range [][]string{
		{"halted", nodes["halt"], "wave 1", evidence}, {"waiting", nodes["wait"], "wave 2", "wave 2 opens at 12:00"},
		{"noLease", nodes["nolease"]}, {"staleLease", nodes["gone"], "Stale"},
	} {
		if !containsLine(strings.Split(text, "\n"), func(l string) bool {
			for _, f := range row {
				if !strings.Contains(l, f) {
					return false
				}
			}
			return true
		}) {
			t.Errorf("text has no line with %q", row)
		}
	}

	// Nothing waits or is halted, but a node still runs the older revision
	// and one has no Lease: still something to report.
	for _, n := range []string{"wait", "halt"} {
		e.setRolloutLease(nodes[n], time.Now(), &rollout.State{Revision: newRev, Phase: rollout.Applied, Since: t0.Add(time.Hour)})
	}
	if code, doc, out := jsonReport(); code != 1 || len(doc.Revisions) != 2 || doc.Revisions[0].Nodes["applied"] != 4 {
		t.Errorf("a node on the older revision and one without a Lease: exit %d, want 1\n%s", code, out)
	}
	// Every node applied the newest revision: nothing to report.
	for _, n := range []string{"old", "nolease", "gone"} {
		e.setRolloutLease(nodes[n], time.Now(), &rollout.State{Revision: newRev, Phase: rollout.Applied, Since: t0.Add(time.Hour)})
	}
	if code, doc, out := jsonReport(); code != 0 || len(doc.Revisions) != 1 || doc.Revisions[0].Nodes["applied"] != 7 || len(doc.NoState) != 0 {
		t.Errorf("every node applied the newest revision: exit %d\n%s", code, out)
	}
	// No agent publishes a state (agents before staged rollouts): nothing
	// rolls out.
	for _, n := range nodes {
		e.setRolloutLease(n, time.Now(), nil)
	}
	if code, text := e.run(args...); code != 0 || !strings.Contains(text, "no rollout: none of the 7 nodes publishes a rollout state") {
		t.Errorf("no state anywhere: exit %d, want 0\n%s", code, text)
	}
}

func equalCounts(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
