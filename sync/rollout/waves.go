package rollout

import (
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Defaults of the wave flags; README.md ("Rolling out a change") says why.
const (
	DefaultCanaryPercent = 2
	DefaultWaves         = 4
	DefaultWaveInterval  = 10 * time.Minute
)

// Plan is how the nodes are split into waves (--rollout-canary-selector,
// --rollout-canary-percent, --rollout-waves, --rollout-wave-interval).
type Plan struct {
	// CanarySelector, when not empty, picks the canaries by their Node's
	// labels; CanaryPercent is then unused.
	CanarySelector labels.Selector
	// CanaryPercent of the nodes, picked by a stable hash of their names,
	// are canaries when no selector is given.
	CanaryPercent int
	// Waves is how many waves follow the canaries; every other node is in
	// one, picked by the same hash.
	Waves int
	// Interval separates the waves: wave k may apply at start + k*Interval.
	Interval time.Duration
}

// Validate says what is wrong with the plan's numbers.
func (p Plan) Validate() error {
	switch {
	case p.CanaryPercent < 0 || p.CanaryPercent > 100:
		return fmt.Errorf("--rollout-canary-percent %d is not between 0 and 100", p.CanaryPercent)
	case p.Waves < 1:
		return fmt.Errorf("--rollout-waves %d: at least one wave follows the canaries", p.Waves)
	case p.Interval < 0:
		return fmt.Errorf("--rollout-wave-interval %s is negative", p.Interval)
	}
	return nil
}

// bySelector: the canaries are chosen by label.
func (p Plan) bySelector() bool { return p.CanarySelector != nil && !p.CanarySelector.Empty() }

// WaveOf is a node's wave: 0 for a canary, 1..Waves after. nodeLabels are
// the Node's labels (used only with a selector). The same name gives the
// same wave on every node and at every start: FNV-1a of the name, its
// remainder by 100 against the canary percentage, the rest of it for the
// wave.
func (p Plan) WaveOf(node string, nodeLabels map[string]string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	sum := h.Sum32()
	waves := max(p.Waves, 1)
	if p.bySelector() {
		if p.CanarySelector.Matches(labels.Set(nodeLabels)) {
			return 0
		}
		return 1 + int(sum%uint32(waves))
	}
	if int(sum%100) < p.CanaryPercent {
		return 0
	}
	return 1 + int((sum/100)%uint32(waves))
}

// OpensAt is when wave may apply a revision that started at start.
func (p Plan) OpensAt(start time.Time, wave int) time.Time {
	return start.Add(time.Duration(wave) * p.Interval)
}

// Peer is another node's published state.
type Peer struct {
	Node  string
	State State
}

// Decision is what a node does about a revision it has not applied.
type Decision struct {
	Revision string
	// Apply: write it now. Otherwise Phase says why not (Waiting, Paused,
	// Halted) and the files stay as they are.
	Apply bool
	Phase Phase
	Mode  Mode
	Wave  int
	// OpensAt is when the node's wave opens (Waiting): the pass is due
	// again then.
	OpensAt time.Time
	// Reason says why, in words: the closed gate's evidence for Halted,
	// the wave's opening for Waiting.
	Reason string
	// Soak is how long a node that applied the revision in waves judges
	// its own health after applying it: the wave interval.
	Soak time.Duration
}

// Decide is the gate for one node: revision rev, which started at start,
// in mode; the node is in wave; peers are the other nodes' states.
// A node applies when the mode is immediate, or when its wave has opened
// and no node of an earlier wave published Halted or RolledBack for rev.
// Paused holds it whatever its wave.
func Decide(rev string, mode Mode, p Plan, start time.Time, wave int, now time.Time, peers []Peer) Decision {
	d := Decision{Revision: rev, Mode: mode, Wave: wave, Apply: true, Phase: Applied}
	switch mode {
	case PausedMode:
		d.Apply, d.Phase = false, Paused
		d.Reason = fmt.Sprintf("revision %s is paused by the ConfigMap annotation %s", rev, Annotation)
		return d
	case Waves:
	default:
		return d
	}
	if closed := closedBy(rev, wave, peers); closed != nil {
		d.Apply, d.Phase = false, Halted
		d.Reason = fmt.Sprintf("revision %s halted: node %s (wave %d) is %s", rev, closed.Node, closed.State.Wave, closed.State.Phase)
		if closed.State.Reason != "" {
			d.Reason += ": " + closed.State.Reason
		}
		return d
	}
	d.OpensAt = p.OpensAt(start, wave)
	if now.Before(d.OpensAt) {
		d.Apply, d.Phase = false, Waiting
		d.Reason = fmt.Sprintf("revision %s waits for wave %d, which opens at %s", rev, wave, d.OpensAt.UTC().Format(time.RFC3339))
	}
	return d
}

// closedBy is the peer whose state closes the gate for a node of wave: a
// node of an earlier wave that halted or rolled back rev. The lowest wave,
// then the name, so that every node names the same one.
func closedBy(rev string, wave int, peers []Peer) *Peer {
	var found []Peer
	for _, pr := range peers {
		s := pr.State
		if s.Revision == rev && s.Wave < wave && (s.Phase == Halted || s.Phase == RolledBack) {
			found = append(found, pr)
		}
	}
	if len(found) == 0 {
		return nil
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if (a.State.Phase == RolledBack) != (b.State.Phase == RolledBack) {
			return a.State.Phase == RolledBack // the evidence, before what it caused
		}
		if a.State.Wave != b.State.Wave {
			return a.State.Wave < b.State.Wave
		}
		return a.Node < b.Node
	})
	return &found[0]
}

// Change is a revision a node's inputs call for, as the pass found it.
type Change struct {
	Revision string
	// Start is when the revision started (StartOf the ConfigMaps).
	Start time.Time
	// ConfigMaps are the metadata of the ConfigMaps it comes from: their
	// annotation Annotation chooses its mode.
	ConfigMaps []metav1.ObjectMeta
}
