package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// TestCanaryRollsBackOnSandboxFailure: the canary applies a change, a pod
// on it then fails its sandbox (the event written as the kubelet writes
// it), and the canary puts its conflist back as it was; its Lease says
// rolledBack with the failure, it raises RolledBack; the later waves
// publish halted and never apply the change, and the canary does not apply
// it again.
func TestCanaryRollsBackOnSandboxFailure(t *testing.T) {
	// Long enough for the canary to roll back before wave 1 opens, on a
	// loaded machine.
	const interval = 12 * time.Second
	e := newEnv(t, "calico-config-v3.32.yaml")
	r := startRolloutNodesEvery(t, e, interval)
	first := r.waitStates("every node at the first revision", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Applied {
			return fmt.Errorf("phase %s", s.Phase)
		}
		return nil
	})
	before := map[string]string{}
	for n := range r.waves {
		before[n] = r.conf(n)
		if strings.Contains(before[n], `"mtu": 9001,`) {
			t.Fatalf("%s starts with the MTU of the change", n)
		}
	}

	start := r.updateConfigMap("9001", "")
	e.waitFile(r.nets[r.canary], "10-calico.conflist", "the canary applied the change", func(s string) bool { return strings.Contains(s, `"mtu": 9001,`) })
	applied := r.waitStates("the canary published Applied", func(n string, s rollout.State) error {
		if n == r.canary && (s.Phase != rollout.Applied || s.Revision == first[n].Revision) {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	rev := applied[r.canary].Revision
	// A pod on the canary fails its sandbox after the change.
	// Its message carries a token (a plugin that prints its request): the
	// Lease, the condition and the event mask it.
	const leaked = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsZWFrZWQifQ.c2lnbmF0dXJl"
	failedAt := time.Now()
	ev := kubeletSandboxFailure(e.ns, "web-0", r.canary, failedAt)
	ev.Message = "Bearer " + leaked + ": " + ev.Message
	_, err := e.client.CoreV1().Events(e.ns).Create(e.ctx, ev, metav1.CreateOptions{})
	must(t, err)

	e.waitFile(r.nets[r.canary], "10-calico.conflist", "the canary put its conflist back", func(s string) bool { return s == before[r.canary] })
	got := r.waitStates("the canary rolled back, the later waves halted", func(n string, s rollout.State) error {
		switch {
		case s.Revision != rev:
			return fmt.Errorf("state %+v, want revision %s", s, rev)
		case n == r.canary && (s.Phase != rollout.RolledBack || !strings.Contains(s.Reason, "web-0") || !strings.Contains(s.Reason, "FailedCreatePodSandBox")):
			return fmt.Errorf("state %+v, want rolledBack naming the pod", s)
		case n != r.canary && s.Phase != rollout.Halted:
			return fmt.Errorf("state %+v, want halted", s)
		}
		return nil
	})
	if !strings.Contains(got[r.canary].Reason, "connection is unauthorized") {
		t.Errorf("the canary's reason %q does not carry the kubelet's message", got[r.canary].Reason)
	}
	rolled := e.waitEvent(r.canary, "RolledBack", rev)
	c := e.waitCondition(r.canary, corev1.ConditionFalse, "RolloutWaiting", "rolled back", rev, "web-0")
	for what, text := range map[string]string{"Lease": got[r.canary].Reason, "event": rolled.Message, "condition": c.Message, "log": r.agents[r.canary].Output()} {
		if strings.Contains(text, leaked) {
			t.Errorf("the %s holds the token from the kubelet's message", what)
		}
	}
	for n := range r.waves {
		if n != r.canary {
			e.waitEvent(n, "RolloutHalted", r.canary)
		}
	}
	// Past the opening of the last wave, no node holds the change, the
	// canary included.
	e.eventually(2*interval+20*time.Second, "the last wave's time has passed", func() error {
		for n := range r.waves {
			if c := r.conf(n); c != before[n] {
				t.Fatalf("%s holds %s after the rollback, want its file as it was", n, c)
			}
		}
		if time.Now().Before(start.Add(2*interval + 2*time.Second)) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if s, err := r.state(r.canary); err != nil || s.Phase != rollout.RolledBack {
		t.Errorf("the canary: %+v %v, want rolledBack still", s, err)
	}
	if evs := e.events(r.canary, "RolledBack"); len(evs) != 1 || evs[0].Count > 1 || evs[0].Type != corev1.EventTypeWarning {
		t.Errorf("RolledBack events %+v, want one Warning", evs)
	}

	// report --rollout says where the revision stopped and why.
	code, out := e.run("report", "--rollout", "--kubeconfig", e.kubeconfig, "--lease-namespace", e.ns, "-o", "json")
	var doc rolloutDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 {
		t.Fatalf("report --rollout: exit %d, %v\n%s", code, err, out)
	}
	found := false
	for _, rv := range doc.Revisions {
		if rv.Revision != rev {
			continue
		}
		found = true
		if len(rv.RolledBack) != 1 || rv.RolledBack[0].Node != r.canary || !strings.Contains(rv.RolledBack[0].Reason, "web-0") {
			t.Errorf("rolled back %+v, want the canary with its evidence", rv.RolledBack)
		}
		if rv.Nodes["halted"] != len(r.waves)-1 || rv.Nodes["applied"] != 0 {
			t.Errorf("counts %v, want %d halted and none applied", rv.Nodes, len(r.waves)-1)
		}
	}
	if !found {
		t.Errorf("report --rollout does not list revision %s:\n%s", rev, out)
	}
}
