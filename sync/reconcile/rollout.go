package reconcile

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// Stager is asked before a pass writes a ConfigMap-borne change: whether
// the node applies the revision now (the agent's rollout gate).
type Stager interface {
	// Decide is the gate's decision on a change the node has not
	// applied.
	Decide(ctx context.Context, c rollout.Change) rollout.Decision
	// At is where a node that is at the change stands (Applied, its
	// mode and wave), without judging the gate.
	At(ctx context.Context, c rollout.Change) rollout.Decision
}

// Rollout is where the node stands on the revision of its inputs, as one
// pass found it.
type Rollout struct {
	rollout.Decision
	// Held are the paths of the files the pass left Outdated because the
	// revision is not applied here yet, or was rolled back here.
	Held []string
	// SoakSince and SoakUntil, when set, are the soak after the node
	// applied the revision in waves: a pod's sandbox failing on the node
	// in it makes the node put its files back (Reconciler.Rollbacks).
	SoakSince, SoakUntil time.Time
}

// Waits reports whether the pass held files back for the rollout.
func (r *Rollout) Waits() bool { return r != nil && !r.Apply && len(r.Held) > 0 }

// revisionInputs are the ConfigMap-borne inputs of in: the template when a
// ConfigMap key gives it, and the values of the other variables set from
// ConfigMap keys (source configmap: calico-config's veth_mtu and
// etcd_endpoints, unless the agent's environment sets them).
func revisionInputs(in *inputs.Install) rollout.Inputs {
	out := rollout.Inputs{Keys: map[string]string{}}
	for name, o := range in.Origins {
		if o.Kind != installcni.OriginConfigMapKey {
			continue
		}
		if name == "CNI_NETWORK_CONFIG" {
			out.Template = in.Template
			continue
		}
		v, ok := "", false
		if in.Env != nil {
			v, ok = in.Env(name)
		}
		if !ok {
			switch name {
			case "CNI_MTU":
				v = in.VethMTU
			case "ETCD_ENDPOINTS":
				v = in.EtcdEndpoints
			}
		}
		out.Keys[o.ConfigMap+"/"+o.Key] = v
	}
	return out
}

// revisionOf names the ConfigMap-borne inputs of in.
func revisionOf(in *inputs.Install) string {
	if in == nil {
		return ""
	}
	return rollout.Revision(revisionInputs(in))
}

// stage decides, before a sync, whether the pass writes the revision of
// want. A file Outdated whose last write was of another revision carries a
// ConfigMap-borne change: when the gate holds the node back, those files
// are left out of what the pass syncs (they keep their content). Every
// other state (Missing, Drifted, StaleToken, Corrupt, an Outdated file of
// the same revision: a fact of the node or its token) is handled as
// without a rollout. Before a revision is applied in waves, what it
// replaces is kept (the rollback point); a node that rolled the revision
// back syncs the point's contents instead. It returns what to sync and
// where the node stands.
func (r *Reconciler) stage(ctx context.Context, p *plan, obs *cniconf.Observation, want *cniconf.Desired) (*cniconf.Desired, *Rollout) {
	if r.Rollout == nil || want.Revision == "" {
		return want, nil
	}
	now := time.Now()
	change := rollout.Change{Revision: want.Revision, Start: rollout.StartOf(p.in.ConfigMapMeta), ConfigMaps: p.in.ConfigMapMeta}
	at := r.Rollout.At(ctx, change)
	if at.Mode == rollout.Immediate {
		// Nothing is staged: the pass writes what it finds due, and
		// the node is at the revision once it has.
		return want, &Rollout{Decision: at}
	}
	back, st, pointErr := r.rolledBack(at, want, now)
	if back != nil {
		return back, st
	}
	var staged []int
	for i, f := range obs.Check(want) {
		if f.State == cniconf.Outdated && obs.RecordedRevision(want.Files[i].Name) != want.Revision {
			staged = append(staged, i)
		}
	}
	if len(staged) == 0 {
		// Nothing of the revision left to write: the node is at it,
		// or holds it back only by a state no rollout stages.
		if pointErr != nil {
			return want, &Rollout{Decision: at}
		}
		return want, r.soaking(at, want, now)
	}
	d := r.Rollout.Decide(ctx, change)
	if pointErr != nil {
		// What to put back is not known: nothing new is applied, and
		// the files stay as they are.
		d.Apply, d.Phase, d.OpensAt = false, rollout.Waiting, now.Add(rollout.RetryAfter)
		d.Reason = fmt.Sprintf("revision %s waits: %v", want.Revision, pointErr)
	}
	if d.Apply {
		if err := r.keepPoint(obs, want, staged, now); err != nil {
			d.Apply, d.Phase, d.OpensAt = false, rollout.Waiting, now.Add(rollout.RetryAfter)
			d.Reason = fmt.Sprintf("revision %s waits: cannot keep what it replaces to roll back to: %v", want.Revision, err)
		} else {
			st := &Rollout{Decision: d}
			if d.Mode == rollout.Waves && d.Soak > 0 {
				st.SoakSince, st.SoakUntil = now, now.Add(d.Soak)
			}
			return want, st
		}
	}
	st = &Rollout{Decision: d}
	keep := &cniconf.Desired{Token: want.Token, Facts: want.Facts, Revision: want.Revision}
	for i, f := range want.Files {
		if len(staged) > 0 && staged[0] == i {
			staged = staged[1:]
			st.Held = append(st.Held, filepath.Join(r.Dir.NetDir, f.Name))
			continue
		}
		keep.Files = append(keep.Files, f)
	}
	return keep, st
}

// heldOutcomes puts back, among the outcomes of a sync of keep, the files
// of want the pass held back: found as they are (the sync did not touch
// them), nothing done. A file keep holds in another version (a rollback's)
// has the outcome of its sync.
func heldOutcomes(obs *cniconf.Observation, want, keep *cniconf.Desired, done []cniconf.Outcome) []cniconf.Outcome {
	if keep == want {
		return done
	}
	found := obs.Check(want)
	out := make([]cniconf.Outcome, len(want.Files))
	j := 0
	for i, f := range want.Files {
		if j < len(keep.Files) && keep.Files[j].Name == f.Name {
			out[i] = done[j]
			j++
			continue
		}
		out[i] = cniconf.Outcome{FileStatus: found[i]}
	}
	return out
}

// sayHeld adds to each held file's status why it was not written.
func sayHeld(files []cniconf.FileStatus, st *Rollout) {
	if !st.Waits() {
		return
	}
	for i := range files {
		for _, h := range st.Held {
			if files[i].Path == h && !strings.Contains(files[i].Message, st.Revision) {
				files[i].Message = joinMessages(files[i].Message, st.Reason)
			}
		}
	}
}
