package reconcile

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// Rollbacks keeps, between passes, the node's rollback point (what its
// files held before the revision it applied last, as saved in the state
// directory) and the revisions the node found unhealthy after applying
// them. The agent tells it of an unhealthy revision from the goroutine of
// its sandbox watch; the passes read and save the point.
type Rollbacks struct {
	mu     sync.Mutex
	loaded bool
	point  *cniconf.RollbackPoint
	bad    map[string]string
}

// Unhealthy records that the node turned unhealthy after applying rev
// (why): the next pass puts its files back. It reports whether that is
// news.
func (rb *Rollbacks) Unhealthy(rev, why string) bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if _, ok := rb.bad[rev]; ok {
		return false
	}
	if rb.bad == nil {
		rb.bad = map[string]string{}
	}
	rb.bad[rev] = why
	return true
}

func (rb *Rollbacks) verdict(rev string) (string, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	why, ok := rb.bad[rev]
	return why, ok
}

// current is the rollback point, read from the state directory once.
func (rb *Rollbacks) current(d *cniconf.Dir) (*cniconf.RollbackPoint, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if !rb.loaded {
		p, err := cniconf.LoadRollbackPoint(d.StateDir, d.NetDir)
		if err != nil {
			return nil, err
		}
		rb.point, rb.loaded = p, true
	}
	return rb.point, nil
}

// save makes p the rollback point, durably first.
func (rb *Rollbacks) save(d *cniconf.Dir, p *cniconf.RollbackPoint) error {
	if err := cniconf.SaveRollbackPoint(d.StateDir, p); err != nil {
		return err
	}
	rb.mu.Lock()
	rb.point, rb.loaded = p, true
	rb.mu.Unlock()
	return nil
}

// keepPoint saves, before a revision is applied, what the staged files
// hold now. A node that cannot keep it does not apply the revision: it
// could not put the files back.
func (r *Reconciler) keepPoint(obs *cniconf.Observation, want *cniconf.Desired, staged []int, now time.Time) error {
	if r.Rollbacks == nil {
		return nil
	}
	names := make([]string, len(staged))
	for i, s := range staged {
		names[i] = want.Files[s].Name
	}
	p, err := obs.RollbackPoint(want, names, want.Revision, obs.RecordedRevision(names[0]), now)
	if err != nil {
		return err
	}
	return r.Rollbacks.save(&r.Dir, p)
}

// rolledBack is what the pass syncs when the node rolled want's revision
// back, or turned unhealthy after applying it: the point's contents in
// place of the revision's, and where the node stands. nil when the node is
// not rolling want's revision back.
func (r *Reconciler) rolledBack(at rollout.Decision, want *cniconf.Desired, now time.Time) (*cniconf.Desired, *Rollout, error) {
	if r.Rollbacks == nil {
		return nil, nil, nil
	}
	p, err := r.Rollbacks.current(&r.Dir)
	if err != nil || p == nil || p.Revision != want.Revision {
		return nil, nil, err
	}
	if p.RolledBack == nil {
		why, bad := r.Rollbacks.verdict(want.Revision)
		if !bad {
			return nil, nil, nil
		}
		// Durably first: a node killed before it put the files back
		// does so when it starts again, and never applies the
		// revision again.
		marked := *p
		marked.RolledBack = &cniconf.RolledBack{At: now.UTC(), Reason: why}
		if err := r.Rollbacks.save(&r.Dir, &marked); err != nil {
			return nil, nil, err
		}
		p = &marked
	}
	st := &Rollout{Decision: at}
	st.Apply, st.Phase = false, rollout.RolledBack
	st.Reason = fmt.Sprintf("revision %s rolled back on this node at %s: %s", want.Revision, p.RolledBack.At.Format(time.RFC3339), p.RolledBack.Reason)
	for _, n := range p.Names() {
		st.Held = append(st.Held, filepath.Join(r.Dir.NetDir, n))
	}
	return p.Back(want), st, nil
}

// soaking is where a node at want's revision stands: Applied, and, while
// the soak after applying it in waves lasts, since when it judges its own
// health.
func (r *Reconciler) soaking(at rollout.Decision, want *cniconf.Desired, now time.Time) *Rollout {
	st := &Rollout{Decision: at}
	if r.Rollbacks == nil || at.Mode != rollout.Waves || at.Soak <= 0 {
		return st
	}
	p, err := r.Rollbacks.current(&r.Dir)
	if err != nil || p == nil || p.Revision != want.Revision || p.RolledBack != nil {
		return st
	}
	if until := p.AppliedAt.Add(at.Soak); now.Before(until) {
		st.SoakSince, st.SoakUntil = p.AppliedAt, until
	}
	return st
}
