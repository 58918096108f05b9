package rollout

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// StateAnnotation is the annotation of an agent's Lease
// (calico-cni-sync-<node>) that says where its node stands on the latest
// revision it has seen.
const StateAnnotation = "calico-cni-sync.projectcalico.org/rollout-state"

// ClosedLabel is the label of an agent's Lease while its node has rolled
// a revision back: its value is the revision's hex digits (a label value
// may hold no colon). The gate of every other node watches only the Leases
// that carry it, so a Lease renewal reaches no other agent: watching every
// agent's Lease would deliver every renewal to every agent, N squared.
const ClosedLabel = "calico-cni-sync.projectcalico.org/rollout-closed"

// ClosedValue is the value of ClosedLabel for a state; "" when the state
// does not close the gate of other nodes (only rolledBack does: a halt is
// their own consequence of one).
func ClosedValue(s State) string {
	if s.Phase != RolledBack {
		return ""
	}
	return strings.TrimPrefix(s.Revision, "sha256:")
}

// Annotation is the ConfigMap annotation that chooses the rollout of a
// change: immediate, waves or paused. It overrides --rollout for the
// revision the ConfigMap is part of.
const Annotation = "calico-cni-sync.projectcalico.org/rollout"

// Phase is where a node stands on a revision.
type Phase string

const (
	// Applied: the node's files are at the revision.
	Applied Phase = "applied"
	// Waiting: the node has seen the revision and waits for its wave, or
	// for the gate to open. Its files are as they were.
	Waiting Phase = "waiting"
	// Paused: the revision is paused by annotation; the node has not
	// applied it.
	Paused Phase = "paused"
	// Halted: the rollout of the revision stopped before this node applied
	// it (a node of an earlier wave turned unhealthy).
	Halted Phase = "halted"
	// RolledBack: the node applied the revision, turned unhealthy, and put
	// its previous content back.
	RolledBack Phase = "rolledBack"
)

// Known reports whether p is one of the phases above.
func (p Phase) Known() bool {
	switch p {
	case Applied, Waiting, Paused, Halted, RolledBack:
		return true
	}
	return false
}

// State is one node's place in the rollout of one revision, as its agent
// publishes it in StateAnnotation.
type State struct {
	// Revision names the revision: "sha256:" and the first 16 hex digits of
	// the digest of the inputs.
	Revision string `json:"revision"`
	Phase    Phase  `json:"phase"`
	// Wave is the node's wave: 0 for a canary, 1.. for the waves after.
	Wave int `json:"wave"`
	// Since is when the node entered Phase.
	Since time.Time `json:"since"`
	// Reason says why, in words: the gate's evidence for Halted and
	// RolledBack (the node and the event that closed it), the time the
	// wave opens for Waiting.
	Reason string `json:"reason,omitempty"`
}

// Encode gives the annotation's value.
func (s State) Encode() (string, error) {
	if !s.Phase.Known() {
		return "", fmt.Errorf("rollout phase %q is not one of applied, waiting, paused, halted, rolledBack", s.Phase)
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// Decode reads an annotation's value. An empty value is no state (ok false);
// a value that does not decode, or names an unknown phase, is an error.
func Decode(v string) (s State, ok bool, err error) {
	if v == "" {
		return State{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return State{}, false, fmt.Errorf("rollout state %q: %w", v, err)
	}
	if !s.Phase.Known() {
		return State{}, false, fmt.Errorf("rollout state %q: phase %q is not one of applied, waiting, paused, halted, rolledBack", v, s.Phase)
	}
	return s, true, nil
}

// Next is the state a node publishes after decision d: s itself when d
// says the same (revision, phase, wave and reason), so that Since stays
// when the node entered the phase; else a new state since now.
func (s State) Next(d Decision, now time.Time) State {
	n := State{Revision: d.Revision, Phase: d.Phase, Wave: d.Wave, Reason: d.Reason, Since: s.Since}
	if n.Revision != s.Revision || n.Phase != s.Phase || n.Wave != s.Wave || n.Reason != s.Reason || s.Since.IsZero() {
		n.Since = now.UTC().Truncate(time.Second)
	}
	return n
}

// Same reports whether two states say the same, Since aside.
func (s State) Same(o State) bool {
	return s.Revision == o.Revision && s.Phase == o.Phase && s.Wave == o.Wave && s.Reason == o.Reason
}
