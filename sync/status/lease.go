package status

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LeasePrefix names each agent's Lease: calico-cni-sync-<node>.
const LeasePrefix = "calico-cni-sync-"

// LeaseNamespace is where the agents keep their Leases unless
// --lease-namespace says otherwise: the agent's own namespace
// (POD_NAMESPACE, from the downward API), else kube-system.
func LeaseNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "kube-system"
}

// Liveness is the agent's heartbeat, a Lease per node as the kubelet keeps
// one: renewed every resync period, with a duration of twice the period, so
// that report can tell an agent that is gone (its Lease not renewed within
// its duration) from one whose node is simply in sync. A heartbeat in the Node object would reach every Node
// watcher in the cluster; a Lease reaches no one who does not ask.
type Liveness struct {
	Client    kubernetes.Interface
	Namespace string
	Node      string
	// Period is how often the Lease is renewed.
	Period time.Duration
	Now    func() time.Time

	renewed time.Time
	last    *coordinationv1.Lease // as the last renewal left it

	mu    sync.Mutex
	state rollout.State // where the node stands on a rollout; zero: nothing to say
}

// SetRollout sets where the node stands on the rollout of a revision, for
// the Lease's annotation rollout.StateAnnotation. The state's Since stays
// while the decision says the same. The next Due is true when the
// annotation must change: it rides the renewal, one Update.
func (l *Liveness) SetRollout(s rollout.State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state = s
}

// Rollout is the state last set.
func (l *Liveness) Rollout() rollout.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// annotation is the state annotation to write; "" when none is set.
func (l *Liveness) annotation() string {
	s := l.Rollout()
	if s.Phase == "" {
		return ""
	}
	v, err := s.Encode()
	if err != nil {
		return ""
	}
	return v
}

// withAnnotation puts the state annotation into a Lease about to be
// written. A state the Lease holds already (a restart) keeps its Since.
func (l *Liveness) withAnnotation(lease *coordinationv1.Lease) {
	if l.Rollout().Phase == "" {
		return
	}
	if old, ok, err := rollout.Decode(lease.Annotations[rollout.StateAnnotation]); err == nil && ok {
		l.mu.Lock()
		if old.Same(l.state) {
			l.state.Since = old.Since
		}
		l.mu.Unlock()
	}
	v := l.annotation()
	if v == "" {
		return
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[rollout.StateAnnotation] = v
	// Only a node that rolled a revision back is watched by the others'
	// gates (rollout.ClosedLabel).
	if closed := rollout.ClosedValue(l.Rollout()); closed != "" {
		if lease.Labels == nil {
			lease.Labels = map[string]string{}
		}
		lease.Labels[rollout.ClosedLabel] = closed
	} else {
		delete(lease.Labels, rollout.ClosedLabel)
	}
}

func (l *Liveness) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Due reports whether the Lease should be renewed now. A renewal runs a
// little after the tick that called for it, by a delay that varies, so the
// next tick can come a little less than a period after it: a renewal is due
// up to a tenth of a period early, or every other tick would be skipped and
// renewals would be two periods apart, when report calls the agent Stale.
func (l *Liveness) Due() bool {
	if l.renewed.IsZero() || l.now().Sub(l.renewed) >= l.Period-l.Period/10 {
		return true
	}
	// A rollout state not yet in the Lease is written now.
	v := l.annotation()
	return v != "" && (l.last == nil || l.last.Annotations[rollout.StateAnnotation] != v)
}

// Renew creates or renews the Lease: one update of the object it last
// wrote, so a renewal is one request; a GET only at start or when someone
// else changed the Lease.
func (l *Liveness) Renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, inputs.APITimeout)
	defer cancel()
	leases := l.Client.CoordinationV1().Leases(l.Namespace)
	name := LeasePrefix + l.Node
	now := metav1.NewMicroTime(l.now())
	secs := int32(2 * l.Period / time.Second)
	var err error
	if l.last != nil {
		next := l.last.DeepCopy()
		next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &l.Node, &secs, &now
		l.withAnnotation(next)
		l.last, err = leases.Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			l.renewed = now.Time
			return nil
		}
		l.last = nil
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renew Lease %s/%s: %w", l.Namespace, name, err)
		}
	}
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		fresh := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.Namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &l.Node, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}
		l.withAnnotation(fresh)
		lease, err = leases.Create(ctx, fresh, metav1.CreateOptions{})
	case err == nil:
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = &l.Node, &secs, &now
		l.withAnnotation(lease)
		lease, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renew Lease %s/%s: %w", l.Namespace, name, err)
	}
	l.last, l.renewed = lease, now.Time
	return nil
}

// LeaseFresh reports whether a Lease was renewed within its duration, at
// now. The duration is the agent's own (twice its resync period, in
// leaseDurationSeconds), not the reader's: an agent run with a longer
// period than the reader's default is not gone. A Lease without a
// duration falls back to twice fallbackPeriod.
func LeaseFresh(lease *coordinationv1.Lease, fallbackPeriod time.Duration, now time.Time) bool {
	if lease == nil || lease.Spec.RenewTime == nil {
		return false
	}
	duration := 2 * fallbackPeriod
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		duration = time.Duration(*s) * time.Second
	}
	return now.Sub(lease.Spec.RenewTime.Time) <= duration
}
