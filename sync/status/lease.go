package status

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
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
	return l.renewed.IsZero() || l.now().Sub(l.renewed) >= l.Period-l.Period/10
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
		lease, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.Namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "calico-cni-sync"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &l.Node, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
	case err == nil:
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = &l.Node, &secs, &now
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
