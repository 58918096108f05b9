package rollout

import (
	"cmp"
	"slices"
	"time"
)

// Observed is one node as report --rollout reads it: the node the agent's
// DaemonSet selects, and its agent's Lease.
type Observed struct {
	Node string
	// Lease: the agent's Lease exists; Fresh: it was renewed within its
	// duration (a Lease that is not is Stale, as report says).
	Lease, Fresh bool
	// Value is the Lease's StateAnnotation, "" when it has none.
	Value string
}

// Why a node has no state in the summary.
const (
	NoLease       = "noLease"
	NoAnnotation  = "noState"
	StaleLease    = "staleLease"
	UnreadableAnn = "unreadable"
)

// Summary is the rollout as the agents publish it, per revision, newest
// first. It is what report --rollout prints, -o json as it is.
type Summary struct {
	// Newest is the revision seen last (the one whose first node entered
	// its phase last); "" when no node publishes a state.
	Newest string `json:"newest"`
	// Nodes is how many nodes were read.
	Nodes     int               `json:"nodes"`
	Revisions []RevisionSummary `json:"revisions"`
	// NoState are the nodes whose place is not known: no Lease, a Lease
	// without the annotation, a Stale Lease (its agent is gone, its last
	// word kept in Last), or an annotation that does not decode.
	NoState []Unknown `json:"noState"`
}

// RevisionSummary is one revision and where its nodes stand.
type RevisionSummary struct {
	Revision string `json:"revision"`
	// FirstSeen is the earliest Since of its nodes.
	FirstSeen time.Time `json:"firstSeen"`
	Nodes     Counts    `json:"nodes"`
	// The nodes in each phase but applied, by wave then name. The Reason
	// of a halted or rolled-back node is the gate's evidence.
	Waiting    []NodeState `json:"waiting"`
	Paused     []NodeState `json:"paused"`
	Halted     []NodeState `json:"halted"`
	RolledBack []NodeState `json:"rolledBack"`
}

// Counts are how many nodes stand in each phase of a revision.
type Counts struct {
	Applied    int `json:"applied"`
	Waiting    int `json:"waiting"`
	Paused     int `json:"paused"`
	Halted     int `json:"halted"`
	RolledBack int `json:"rolledBack"`
}

// NodeState is one node that has not applied a revision.
type NodeState struct {
	Node   string    `json:"node"`
	Wave   int       `json:"wave"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason,omitempty"`
}

// Unknown is a node with no state, and why.
type Unknown struct {
	Node string `json:"node"`
	// Why is noLease, noState, staleLease or unreadable.
	Why string `json:"why"`
	// Message says it in words (the decode error of an unreadable
	// annotation).
	Message string `json:"message,omitempty"`
	// Last is a Stale Lease's last published state.
	Last *State `json:"last,omitempty"`
}

// Summarize groups the nodes by revision and phase.
func Summarize(nodes []Observed) Summary {
	s := Summary{Nodes: len(nodes), Revisions: []RevisionSummary{}, NoState: []Unknown{}}
	byRev := map[string]*RevisionSummary{}
	for _, n := range nodes {
		if !n.Lease {
			s.NoState = append(s.NoState, Unknown{Node: n.Node, Why: NoLease, Message: "no Lease: no agent runs there, or it never started"})
			continue
		}
		st, ok, err := Decode(n.Value)
		switch {
		case err != nil:
			s.NoState = append(s.NoState, Unknown{Node: n.Node, Why: UnreadableAnn, Message: err.Error()})
			continue
		case !n.Fresh:
			u := Unknown{Node: n.Node, Why: StaleLease, Message: "the Lease is Stale: the agent is gone or cannot reach the API server"}
			if ok {
				u.Last = &st
			}
			s.NoState = append(s.NoState, u)
			continue
		case !ok:
			s.NoState = append(s.NoState, Unknown{Node: n.Node, Why: NoAnnotation, Message: "the Lease has no rollout state: the agent publishes none (an older agent)"})
			continue
		}
		r := byRev[st.Revision]
		if r == nil {
			r = &RevisionSummary{Revision: st.Revision, FirstSeen: st.Since,
				Waiting: []NodeState{}, Paused: []NodeState{}, Halted: []NodeState{}, RolledBack: []NodeState{}}
			byRev[st.Revision] = r
		}
		if st.Since.Before(r.FirstSeen) {
			r.FirstSeen = st.Since
		}
		ns := NodeState{Node: n.Node, Wave: st.Wave, Since: st.Since, Reason: st.Reason}
		switch st.Phase {
		case Applied:
			r.Nodes.Applied++
		case Waiting:
			r.Nodes.Waiting++
			r.Waiting = append(r.Waiting, ns)
		case Paused:
			r.Nodes.Paused++
			r.Paused = append(r.Paused, ns)
		case Halted:
			r.Nodes.Halted++
			r.Halted = append(r.Halted, ns)
		case RolledBack:
			r.Nodes.RolledBack++
			r.RolledBack = append(r.RolledBack, ns)
		}
	}
	byWave := func(a, b NodeState) int { return cmp.Or(cmp.Compare(a.Wave, b.Wave), cmp.Compare(a.Node, b.Node)) }
	for _, r := range byRev {
		for _, l := range [][]NodeState{r.Waiting, r.Paused, r.Halted, r.RolledBack} {
			slices.SortFunc(l, byWave)
		}
		s.Revisions = append(s.Revisions, *r)
	}
	slices.SortFunc(s.Revisions, func(a, b RevisionSummary) int {
		return cmp.Or(b.FirstSeen.Compare(a.FirstSeen), cmp.Compare(a.Revision, b.Revision))
	})
	if len(s.Revisions) > 0 {
		s.Newest = s.Revisions[0].Revision
	}
	slices.SortFunc(s.NoState, func(a, b Unknown) int { return cmp.Compare(a.Node, b.Node) })
	return s
}

// Settled reports whether there is nothing to report: no node publishes a
// state, or every node applied the newest revision.
func (s Summary) Settled() bool {
	published := len(s.Revisions) > 0
	for _, u := range s.NoState {
		published = published || u.Last != nil
	}
	if !published {
		return true
	}
	return len(s.NoState) == 0 && len(s.Revisions) == 1 && s.Revisions[0].Nodes.Applied == s.Nodes
}
