package rollout

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode is how a revision reaches the nodes (--rollout, and the ConfigMap
// annotation Annotation).
type Mode string

const (
	// Immediate: every node applies a revision as soon as it sees it.
	Immediate Mode = "immediate"
	// Waves: the canaries first, then each wave an interval later, while
	// no node of an earlier wave has halted or rolled back.
	Waves Mode = "waves"
	// PausedMode (the annotation only): no node that has not applied the
	// revision applies it until the annotation is removed or changed.
	PausedMode Mode = "paused"
)

// ParseFlag reads --rollout: immediate or waves.
func ParseFlag(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Immediate, Waves:
		return m, nil
	}
	return "", fmt.Errorf("--rollout %q is not one of immediate, waves", s)
}

// ModeFor is the mode of a revision: the annotation of the ConfigMaps it
// comes from, else the flag. When the ConfigMaps disagree the more
// careful wins: paused, then waves, then immediate. A value the agent does
// not know is reported and ignored (the flag's mode holds).
func ModeFor(flag Mode, cms []metav1.ObjectMeta) (mode Mode, problem string) {
	rank := map[Mode]int{Immediate: 1, Waves: 2, PausedMode: 3}
	var best Mode
	var bad []string
	for _, m := range cms {
		v, ok := m.Annotations[Annotation]
		if !ok {
			continue
		}
		got := Mode(strings.TrimSpace(v))
		if rank[got] == 0 {
			bad = append(bad, fmt.Sprintf("ConfigMap %s/%s annotation %s=%q is not one of immediate, waves, paused", m.Namespace, m.Name, Annotation, v))
			continue
		}
		if rank[got] > rank[best] {
			best = got
		}
	}
	if best == "" {
		best = flag
	}
	return best, strings.Join(bad, "; ")
}
