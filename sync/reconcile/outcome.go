package reconcile

import (
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Pass is what one reconcile decided and did, for the loop, the events and
// the metrics: the inside of a pass, beside the Report the user reads.
type Pass struct {
	// Desired is what the inputs called for.
	Desired *cniconf.Desired
	// Token is the source's token the files were rendered with.
	Token token.Token
	// Policy is the token policy the pass worked under.
	Policy string
	// Outcomes are the managed files, in the Report's order.
	Outcomes []Outcome
	// OwnTokenRejected: the API server rejects the token the source gave,
	// and the node's files hold it.
	OwnTokenRejected bool
	// OwnFault is the pass's failure when the reason is the agent's own: a
	// write that failed, or the API server refusing the agent's credential
	// (401) or RBAC (403) a read of the inputs or the token. A failure of
	// the inputs themselves (a bad template, a missing ConfigMap, a file in
	// state Error) is the node's state, never an OwnFault.
	OwnFault error
	// Rollout is where the node stands on the revision of its inputs (see
	// Report.Rollout).
	Rollout *Rollout

	in  *inputs.Install
	obs *cniconf.Observation
}

// Outcome is what a pass found at one file, did to it, and left there.
type Outcome struct {
	// Found is the file's state before the pass acted, and FoundPaths the
	// paths that differed then.
	Found      cniconf.State
	FoundPaths []string
	// Action is what the pass did; Backup where it kept what it replaced.
	Action cniconf.Action
	Backup string
	// WouldChange: a dry run found a write due.
	WouldChange bool
	// SettleFor: the file changed moments ago, and the pass left it for
	// its writer to finish.
	SettleFor time.Duration
	// Now is the file as the pass left it: what the Report says of it.
	Now cniconf.FileStatus
}

// outcomeOf joins what Sync found and did at a file with its state after.
func outcomeOf(done cniconf.Outcome, after cniconf.FileStatus) Outcome {
	if done.Message != "" && after.Message == "" {
		after.Message = done.Message
	}
	after.Backup = done.Backup
	return Outcome{Found: done.State, FoundPaths: done.ChangedPaths, Action: done.Action, Backup: done.Backup,
		WouldChange: done.WouldChange, SettleFor: done.SettleFor, Now: after}
}

// unchanged are the outcomes of a pass that only looked.
func unchanged(files []cniconf.FileStatus) []Outcome {
	out := make([]Outcome, len(files))
	for i, f := range files {
		out[i] = Outcome{Found: f.State, FoundPaths: f.ChangedPaths, Now: f}
	}
	return out
}

// Settling is the first file the pass left for its writer to finish, and
// how long it asks the loop to wait before acting; nil when none.
func (p *Pass) Settling() *Outcome {
	if p == nil {
		return nil
	}
	for i := range p.Outcomes {
		if p.Outcomes[i].SettleFor > 0 {
			return &p.Outcomes[i]
		}
	}
	return nil
}
