package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// rolloutInterval is the wave interval of the rollout tests: short, and
// long enough that an agent on a loaded machine reacts within one.
const rolloutInterval = 4 * time.Second

// rolloutNodes is a canary (labelled) and two nodes in each of waves 1 and
// 2, each with its own agent and CNI directory, its Lease in the test's
// namespace.
type rolloutNodes struct {
	e      *env
	canary string
	waves  map[string]int
	nets   map[string]string
	agents map[string]*agent
}

const canaryLabel = "rollout.calico-cni-sync.test/canary"

func startRolloutNodes(t *testing.T, e *env) *rolloutNodes {
	return startRolloutNodesEvery(t, e, rolloutInterval)
}

// startRolloutNodesEvery is startRolloutNodes with another wave interval.
func startRolloutNodesEvery(t *testing.T, e *env, interval time.Duration) *rolloutNodes {
	sel, err := labels.Parse(canaryLabel + "=true")
	must(t, err)
	plan := rollout.Plan{CanarySelector: sel, Waves: 2, Interval: interval}
	r := &rolloutNodes{e: e, canary: e.node, waves: map[string]int{e.node: 0}, nets: map[string]string{}, agents: map[string]*agent{}}
	node, err := e.client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
	must(t, err)
	node.Labels[canaryLabel] = "true"
	_, err = e.client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
	must(t, err)
	// Two nodes in each wave: the names whose hash puts them there.
	count := map[int]int{}
	for i := 0; count[1] < 2 || count[2] < 2; i++ {
		suffix := fmt.Sprintf("w%d", i)
		w := plan.WaveOf(e.node+"-"+suffix, nil)
		if count[w] >= 2 {
			continue
		}
		count[w]++
		r.waves[e.addNode(suffix)] = w
	}
	for n := range r.waves {
		r.nets[n] = filepath.Join(e.dir, n, "net.d")
		must(t, os.MkdirAll(r.nets[n], 0o755))
		r.agents[n] = e.startAgentFor(n, r.nets[n], "--rollout", "waves", "--rollout-canary-selector", canaryLabel+"=true",
			"--rollout-waves", "2", "--rollout-wave-interval", interval.String(), "--lease-namespace", e.ns)
	}
	for n := range r.waves {
		e.waitCondition(n, corev1.ConditionFalse, "InSync")
	}
	return r
}

// state is a node's published rollout state.
func (r *rolloutNodes) state(node string) (rollout.State, error) {
	l, err := r.e.client.CoordinationV1().Leases(r.e.ns).Get(r.e.ctx, "calico-cni-sync-"+node, metav1.GetOptions{})
	if err != nil {
		return rollout.State{}, err
	}
	s, ok, err := rollout.Decode(l.Annotations[rollout.StateAnnotation])
	if err == nil && !ok {
		err = fmt.Errorf("Lease of %s has no %s", node, rollout.StateAnnotation)
	}
	return s, err
}

// waitStates waits until every node but skip published a state that
// check accepts, and returns them.
func (r *rolloutNodes) waitStates(what string, check func(node string, s rollout.State) error, skip ...string) map[string]rollout.State {
	r.e.t.Helper()
	out := map[string]rollout.State{}
	r.e.eventually(45*time.Second, what, func() error {
		for n := range r.waves {
			if slices.Contains(skip, n) {
				continue
			}
			s, err := r.state(n)
			if err == nil {
				err = check(n, s)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			out[n] = s
		}
		return nil
	})
	return out
}

func (r *rolloutNodes) conf(node string) string {
	b, err := os.ReadFile(filepath.Join(r.nets[node], "10-calico.conflist"))
	must(r.e.t, err)
	return string(b)
}

// updateConfigMap changes calico-config's veth_mtu and its rollout
// annotation ("" removes it) in one update, and returns when the API
// server recorded it.
func (r *rolloutNodes) updateConfigMap(mtu, annotation string) time.Time {
	e := r.e
	e.t.Helper()
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "calico-config", metav1.GetOptions{})
	must(e.t, err)
	if mtu != "" {
		cm.Data["veth_mtu"] = mtu
	}
	if annotation == "" {
		delete(cm.Annotations, rollout.Annotation)
	} else {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[rollout.Annotation] = annotation
	}
	cm, err = e.client.CoreV1().ConfigMaps(e.ns).Update(e.ctx, cm, metav1.UpdateOptions{})
	must(e.t, err)
	return rollout.StartOf([]metav1.ObjectMeta{cm.ObjectMeta})
}

// TestRolloutWaves: a ConfigMap change reaches the canary first, then
// wave 1, then wave 2, each not before its opening; the nodes waiting say
// RolloutWaiting and keep their files. Paused holds every node that has
// not applied the change, and its removal resumes the waves.
func TestRolloutWaves(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	r := startRolloutNodes(t, e)
	first := r.waitStates("every node at the first revision", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Applied {
			return fmt.Errorf("phase %s", s.Phase)
		}
		return nil
	})
	before := first[r.canary].Revision
	for n, s := range first {
		if s.Revision != before || s.Wave != r.waves[n] {
			t.Fatalf("%s publishes %+v, want revision %s wave %d (every node names the inputs alike)", n, s, before, r.waves[n])
		}
	}

	start := r.updateConfigMap("1440", "")
	var wave2 string
	for n, w := range r.waves {
		if w == 2 {
			wave2 = n
		}
	}
	// A node of wave 2 waits: its condition says so, its file is as it
	// was, and its Lease says Waiting with the wave's opening.
	c := e.waitCondition(wave2, corev1.ConditionFalse, "RolloutWaiting", "waits for wave 2", "left as it was")
	if strings.Contains(r.conf(wave2), `"mtu": 1440,`) {
		t.Fatalf("wave 2 wrote the change while waiting: %s", c.Message)
	}
	waiting := r.waitStates("wave 2 publishes Waiting", func(n string, s rollout.State) error {
		if r.waves[n] == 2 && (s.Phase != rollout.Waiting || s.Revision == before || s.Wave != 2) {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	after := waiting[wave2].Revision
	if !strings.Contains(c.Message, after) {
		t.Errorf("the condition %q does not name the revision %s", c.Message, after)
	}

	for n := range r.waves {
		e.waitFile(r.nets[n], "10-calico.conflist", "new MTU", func(s string) bool { return strings.Contains(s, `"mtu": 1440,`) })
	}
	applied := r.waitStates("every node applied", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Applied || s.Revision != after {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	// The order, from the files' write times: the canary, then wave 1,
	// then wave 2, and no wave before its opening.
	written := map[string]time.Time{}
	for n := range r.waves {
		fi, err := os.Stat(filepath.Join(r.nets[n], "10-calico.conflist"))
		must(t, err)
		written[n] = fi.ModTime()
		if opens := start.Add(time.Duration(r.waves[n]) * rolloutInterval); written[n].Before(opens) {
			t.Errorf("%s (wave %d) wrote at %s, before its wave opened at %s", n, r.waves[n], written[n], opens)
		}
		if applied[n].Since.Before(start.Add(time.Duration(r.waves[n]) * rolloutInterval).Truncate(time.Second)) {
			t.Errorf("%s (wave %d) published Applied since %s, before its wave opened", n, r.waves[n], applied[n].Since)
		}
	}
	for a := range r.waves {
		for b := range r.waves {
			if r.waves[a] < r.waves[b] && !written[a].Before(written[b]) {
				t.Errorf("%s (wave %d) wrote at %s, not before %s (wave %d) at %s", a, r.waves[a], written[a], b, r.waves[b], written[b])
			}
		}
	}
	for n := range r.waves {
		e.waitCondition(n, corev1.ConditionFalse, "InSync")
	}

	// Paused: every node holds the change, whatever its wave.
	r.updateConfigMap("1400", "paused")
	paused := r.waitStates("every node paused", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Paused || s.Revision == after {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	e.waitCondition(r.canary, corev1.ConditionFalse, "RolloutWaiting", "paused")
	// Past the opening of the last wave, nothing was written.
	holdUntil := time.Now().Add(2*rolloutInterval + time.Second)
	e.eventually(2*rolloutInterval+10*time.Second, "the last wave's time has passed, paused", func() error {
		for n := range r.waves {
			if strings.Contains(r.conf(n), `"mtu": 1400,`) {
				t.Fatalf("%s applied a paused change", n)
			}
			if s, err := r.state(n); err != nil || s.Phase != rollout.Paused {
				t.Fatalf("%s left Paused: %+v %v", n, s, err)
			}
		}
		if time.Now().Before(holdUntil) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Resumed: the waves go on from the annotation's removal.
	r.updateConfigMap("", "")
	for n := range r.waves {
		e.waitFile(r.nets[n], "10-calico.conflist", "resumed MTU", func(s string) bool { return strings.Contains(s, `"mtu": 1400,`) })
	}
	r.waitStates("every node applied the resumed change", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Applied || s.Revision != paused[r.canary].Revision {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
}

// TestRolloutHaltsOnRollBack: the canary's Lease says it rolled the
// change back; the later waves publish Halted, announce RolloutHalted,
// and never write it.
func TestRolloutHaltsOnRollBack(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	r := startRolloutNodes(t, e)
	// The canary's agent is gone; its Lease speaks for it, as it would
	// after rolling the change back.
	r.agents[r.canary].stop()
	// Paused first, so the revision is known before any wave opens.
	r.updateConfigMap("1380", "paused")
	paused := r.waitStates("the change paused", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Paused {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	}, r.canary)
	var rev string
	for _, s := range paused {
		rev = s.Revision
	}
	lease, err := e.client.CoordinationV1().Leases(e.ns).Get(e.ctx, "calico-cni-sync-"+r.canary, metav1.GetOptions{})
	must(t, err)
	v, err := rollout.State{Revision: rev, Phase: rollout.RolledBack, Wave: 0, Since: time.Now().UTC().Truncate(time.Second),
		Reason: "FailedCreatePodSandBox: plugin type=calico failed"}.Encode()
	must(t, err)
	lease.Annotations[rollout.StateAnnotation] = v
	lease.Labels[rollout.ClosedLabel] = strings.TrimPrefix(rev, "sha256:") // as the agent marks a rollback
	_, err = e.client.CoordinationV1().Leases(e.ns).Update(e.ctx, lease, metav1.UpdateOptions{})
	must(t, err)
	before := map[string]string{}
	for n := range r.waves {
		before[n] = r.conf(n)
	}
	start := r.updateConfigMap("", "")

	r.waitStates("the later waves halted", func(_ string, s rollout.State) error {
		if s.Phase != rollout.Halted || s.Revision != rev || !strings.Contains(s.Reason, r.canary) {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	}, r.canary)
	for n := range r.waves {
		if n == r.canary {
			continue
		}
		e.waitCondition(n, corev1.ConditionFalse, "RolloutWaiting", "halted", r.canary, "FailedCreatePodSandBox")
		e.waitEvent(n, "RolloutHalted", r.canary)
	}
	// Past the opening of the last wave, nothing was written and each
	// node announced the halt once.
	e.eventually(2*rolloutInterval+15*time.Second, "the last wave's time has passed, halted", func() error {
		for n := range r.waves {
			if n != r.canary && r.conf(n) != before[n] {
				t.Fatalf("%s wrote a halted change", n)
			}
		}
		if time.Now().Before(start.Add(2*rolloutInterval + 2*time.Second)) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for n := range r.waves {
		if n == r.canary {
			continue
		}
		if s, err := r.state(n); err != nil || s.Phase != rollout.Halted {
			t.Errorf("%s: %+v %v, want Halted", n, s, err)
		}
		if evs := e.events(n, "RolloutHalted"); len(evs) != 1 || evs[0].Count > 1 || evs[0].Type != corev1.EventTypeWarning {
			t.Errorf("%s: RolloutHalted events %+v, want one Warning", n, evs)
		}
	}
}
