package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const tmpl = `{"name":"k8s-pod-network","plugins":[{"type":"calico","mtu":__CNI_MTU__,"kubernetes":{"kubeconfig":"__KUBECONFIG_FILEPATH__"}}]}`

func TestRevisionNamesTheConfigMapInputsOnly(t *testing.T) {
	base := Inputs{Template: tmpl, Keys: map[string]string{"kube-system/calico-config/veth_mtu": "1440"}}
	rev := Revision(base)
	if !strings.HasPrefix(rev, "sha256:") || len(rev) != len("sha256:")+16 {
		t.Fatalf("Revision = %q, want sha256: and 16 hex digits", rev)
	}
	// The same inputs, built anew (another node, another start): the same
	// name. The token and the node's name are no input: a render for
	// another node or with a new token has the same Inputs.
	if again := Revision(Inputs{Template: tmpl, Keys: map[string]string{"kube-system/calico-config/veth_mtu": "1440"}}); again != rev {
		t.Errorf("same inputs: %s, want %s", again, rev)
	}
	for name, in := range map[string]Inputs{
		"template changed":  {Template: strings.Replace(tmpl, "k8s-pod-network", "k8s-pod-network2", 1), Keys: base.Keys},
		"key value changed": {Template: tmpl, Keys: map[string]string{"kube-system/calico-config/veth_mtu": "1400"}},
		"key added":         {Template: tmpl, Keys: map[string]string{"kube-system/calico-config/veth_mtu": "1440", "kube-system/calico-config/etcd_endpoints": ""}},
		"key renamed":       {Template: tmpl, Keys: map[string]string{"kube-system/calico-config/mtu": "1440"}},
		// A boundary moved between key and value is another input.
		"boundary moved": {Template: tmpl, Keys: map[string]string{"kube-system/calico-config/veth_mtu1": "440"}},
	} {
		if got := Revision(in); got == rev {
			t.Errorf("%s: same revision %s", name, got)
		}
	}
	if got := Revision(Inputs{}); got != "" {
		t.Errorf("no ConfigMap-borne input: %q, want no revision", got)
	}
}

func TestStartOfIsTheLatestRecordedUpdate(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { v := metav1.NewTime(t0.Add(d)); return &v }
	cms := []metav1.ObjectMeta{
		{Name: "a", CreationTimestamp: metav1.NewTime(t0), ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: "kubectl-client-side-apply", Time: at(time.Minute)}, {Manager: "kubectl-edit", Time: at(5 * time.Minute)}}},
		{Name: "b", CreationTimestamp: metav1.NewTime(t0.Add(3 * time.Minute))},
	}
	if got, want := StartOf(cms), t0.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("StartOf = %s, want %s (the latest managedFields time)", got, want)
	}
	if got, want := StartOf(cms[1:]), t0.Add(3*time.Minute); !got.Equal(want) {
		t.Errorf("StartOf without managedFields = %s, want the creationTimestamp %s", got, want)
	}
}

func TestModeForTheAnnotationOverridesTheFlag(t *testing.T) {
	ann := func(v string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "kube-system", Name: "calico-config", Annotations: map[string]string{Annotation: v}}
	}
	for _, c := range []struct {
		flag Mode
		cms  []metav1.ObjectMeta
		want Mode
		bad  bool
	}{
		{Waves, nil, Waves, false},
		{Waves, []metav1.ObjectMeta{ann("immediate")}, Immediate, false},
		{Immediate, []metav1.ObjectMeta{ann("waves")}, Waves, false},
		{Immediate, []metav1.ObjectMeta{ann("paused")}, PausedMode, false},
		{Immediate, []metav1.ObjectMeta{ann("immediate"), ann("paused")}, PausedMode, false},
		{Waves, []metav1.ObjectMeta{ann("slowly")}, Waves, true},
	} {
		got, problem := ModeFor(c.flag, c.cms)
		if got != c.want || (problem != "") != c.bad {
			t.Errorf("ModeFor(%s, %v) = %s, %q; want %s, problem %v", c.flag, c.cms, got, problem, c.want, c.bad)
		}
	}
}

func TestWaveOfIsStableAndRoughlyThePercentages(t *testing.T) {
	p := Plan{CanaryPercent: 5, Waves: 4, Interval: time.Minute}
	const n = 10000
	counts := make([]int, p.Waves+1)
	for i := range n {
		node := fmt.Sprintf("node-%d.eu-west-1.compute.internal", i)
		w := p.WaveOf(node, nil)
		if again := p.WaveOf(node, map[string]string{"x": "y"}); again != w {
			t.Fatalf("%s: wave %d, then %d", node, w, again)
		}
		if w < 0 || w > p.Waves {
			t.Fatalf("%s: wave %d out of 0..%d", node, w, p.Waves)
		}
		counts[w]++
	}
	// 5 % canaries, the other 95 % spread over 4 waves: 23.75 % each.
	if c := counts[0]; c < 400 || c > 600 {
		t.Errorf("canaries: %d of %d, want about 500", c, n)
	}
	for w := 1; w <= p.Waves; w++ {
		if c := counts[w]; c < 2100 || c > 2650 {
			t.Errorf("wave %d: %d of %d, want about 2375", w, c, n)
		}
	}
	// A known name keeps its wave across releases: it is FNV-1a, not a
	// seeded hash.
	if w := p.WaveOf("node-1", nil); w != p.WaveOf("node-1", nil) {
		t.Errorf("node-1 unstable")
	}
	none := Plan{CanaryPercent: 0, Waves: 3}
	for i := range 1000 {
		if none.WaveOf(fmt.Sprint("n", i), nil) == 0 {
			t.Fatal("0 % canaries picked one")
		}
	}
}

func TestWaveOfBySelector(t *testing.T) {
	sel, err := labels.Parse("rollout=canary")
	if err != nil {
		t.Fatal(err)
	}
	p := Plan{CanarySelector: sel, CanaryPercent: 100, Waves: 2}
	if w := p.WaveOf("a", map[string]string{"rollout": "canary"}); w != 0 {
		t.Errorf("labelled node: wave %d, want 0", w)
	}
	for i := range 200 {
		if w := p.WaveOf(fmt.Sprint("n", i), map[string]string{"rollout": "no"}); w < 1 || w > 2 {
			t.Fatalf("unlabelled node: wave %d, want 1..2 (the percentage is unused with a selector)", w)
		}
	}
}

func TestDecide(t *testing.T) {
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	p := Plan{Waves: 3, Interval: 10 * time.Minute}
	rev := "sha256:0123456789abcdef"
	rolledBack := Peer{Node: "canary-1", State: State{Revision: rev, Phase: RolledBack, Wave: 0, Reason: "FailedCreatePodSandBox"}}
	for _, c := range []struct {
		name  string
		mode  Mode
		wave  int
		now   time.Time
		peers []Peer
		apply bool
		phase Phase
	}{
		{"immediate applies at once", Immediate, 3, start, nil, true, Applied},
		{"canary applies at start", Waves, 0, start, nil, true, Applied},
		{"wave 2 waits", Waves, 2, start.Add(19 * time.Minute), nil, false, Waiting},
		{"wave 2 opens", Waves, 2, start.Add(20 * time.Minute), nil, true, Applied},
		{"paused holds an open wave", PausedMode, 0, start.Add(time.Hour), nil, false, Paused},
		{"an earlier wave rolled back", Waves, 1, start.Add(time.Hour), []Peer{rolledBack}, false, Halted},
		{"an earlier wave halted", Waves, 2, start.Add(time.Hour), []Peer{{Node: "w1", State: State{Revision: rev, Phase: Halted, Wave: 1}}}, false, Halted},
		{"the same wave rolled back", Waves, 0, start, []Peer{rolledBack}, true, Applied},
		{"another revision rolled back", Waves, 1, start.Add(time.Hour), []Peer{{Node: "c", State: State{Revision: "sha256:ffff", Phase: RolledBack}}}, true, Applied},
		{"an earlier wave applied", Waves, 1, start.Add(time.Hour), []Peer{{Node: "c", State: State{Revision: rev, Phase: Applied}}}, true, Applied},
	} {
		d := Decide(rev, c.mode, p, start, c.wave, c.now, c.peers)
		if d.Apply != c.apply || d.Phase != c.phase {
			t.Errorf("%s: apply %v phase %s (%s), want %v %s", c.name, d.Apply, d.Phase, d.Reason, c.apply, c.phase)
		}
		if d.Phase == Waiting && !d.OpensAt.Equal(start.Add(20*time.Minute)) {
			t.Errorf("%s: opens at %s", c.name, d.OpensAt)
		}
		if d.Phase == Halted && !strings.Contains(d.Reason, rev) {
			t.Errorf("%s: reason %q does not name the revision", c.name, d.Reason)
		}
	}
	if d := Decide(rev, Waves, p, start, 1, start.Add(time.Hour), []Peer{rolledBack}); !strings.Contains(d.Reason, "canary-1") || !strings.Contains(d.Reason, "FailedCreatePodSandBox") {
		t.Errorf("halt reason %q does not say where and why", d.Reason)
	}
}
