package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinformers "k8s.io/client-go/informers/coordination/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// LeaseSelector selects the agents' Leases.
const LeaseSelector = "app.kubernetes.io/name=calico-cni-sync"

// LeasePrefix names each agent's Lease: calico-cni-sync-<node>.
const LeasePrefix = "calico-cni-sync-"

// Peers is the states of the other agents that rolled a revision back: one
// informer on the Leases of the agents' namespace that carry ClosedLabel
// (and LeaseSelector), started by the first States, that is by the first
// revision rolled out in waves. Renewals of the other Leases never reach
// it. The cache keeps of a Lease only its name and its state annotation.
type Peers struct {
	Client    kubernetes.Interface
	Namespace string
	// Self is this node: its own Lease is no peer.
	Self string
	// Trigger is called when a peer halts or rolls back a revision: a
	// node waiting for its wave judges its gate again at once.
	Trigger func(why string)

	once   sync.Once
	store  cache.Store
	synced func() bool
	stop   chan struct{}
	done   sync.WaitGroup
}

// firstListWait bounds how long the first States waits for the first list.
const firstListWait = 30 * time.Second

func (p *Peers) start() {
	p.stop = make(chan struct{})
	inf := coordinformers.NewFilteredLeaseInformer(p.Client, p.Namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = LeaseSelector + "," + ClosedLabel })
	_ = inf.SetTransform(keepState)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { p.changed(nil, obj) },
		UpdateFunc: func(oldObj, newObj any) {
			p.changed(oldObj, newObj)
		},
	})
	p.store, p.synced = inf.GetStore(), inf.HasSynced
	p.done.Go(func() { inf.Run(p.stop) })
}

// changed triggers a pass when a peer's state turned Halted or RolledBack:
// the only states that change another node's decision before its wave
// opens. Renewals, which change nothing else, trigger nothing.
func (p *Peers) changed(oldObj, newObj any) {
	if p.Trigger == nil {
		return
	}
	n, ok := newObj.(*coordinationv1.Lease)
	if !ok || strings.TrimPrefix(n.Name, LeasePrefix) == p.Self {
		return
	}
	now, _, _ := Decode(n.Annotations[StateAnnotation])
	if now.Phase != Halted && now.Phase != RolledBack {
		return
	}
	if o, ok := oldObj.(*coordinationv1.Lease); ok && o.Annotations[StateAnnotation] == n.Annotations[StateAnnotation] {
		return
	}
	p.Trigger("peer " + strings.TrimPrefix(n.Name, LeasePrefix) + " " + string(now.Phase))
}

// keepState is the informer's transform: a Lease's name and its state
// annotation, nothing else (a cluster's Leases renew often; their specs
// are not needed here).
func keepState(obj any) (any, error) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return obj, nil
	}
	out := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.Name, Namespace: l.Namespace, ResourceVersion: l.ResourceVersion}}
	if v, ok := l.Annotations[StateAnnotation]; ok {
		out.Annotations = map[string]string{StateAnnotation: v}
	}
	return out, nil
}

// States are the peers' states, as the cache holds them. The first call
// starts the informer and waits, a bounded time, for its first list.
// A state that does not decode is left out.
func (p *Peers) States(ctx context.Context) ([]Peer, error) {
	p.once.Do(p.start)
	if !p.synced() {
		ctx, cancel := context.WithTimeout(ctx, firstListWait)
		defer cancel()
		if !cache.WaitForCacheSync(ctx.Done(), p.synced) {
			return nil, errors.New("the first list of the agents' Leases did not complete")
		}
	}
	var out []Peer
	for _, obj := range p.store.List() {
		l, ok := obj.(*coordinationv1.Lease)
		if !ok {
			continue
		}
		node := strings.TrimPrefix(l.Name, LeasePrefix)
		if node == p.Self {
			continue
		}
		if s, ok, err := Decode(l.Annotations[StateAnnotation]); err == nil && ok {
			out = append(out, Peer{Node: node, State: s})
		}
	}
	return out, nil
}

// Stop stops the informer, if it started.
func (p *Peers) Stop() {
	if p.stop != nil {
		close(p.stop)
		p.done.Wait()
	}
}

// Gate is the agent's rollout gate: the mode of --rollout, overridden by
// the ConfigMaps' annotation, the node's wave in the plan, and its peers.
type Gate struct {
	Mode Mode
	Plan Plan
	Node string
	// NodeLabels gives the node's labels; asked once per revision, and
	// only when the plan picks canaries by selector.
	NodeLabels func(ctx context.Context) (map[string]string, error)
	Peers      *Peers
	Now        func() time.Time

	mu      sync.Mutex
	waveRev string // the revision wave was computed for
	wave    int
}

// RetryAfter is when a gate that could not read what it needs is asked
// again.
const RetryAfter = 30 * time.Second

// Decide is the gate's decision for a change. A change rolled out in
// waves whose node labels or peers cannot be read waits (it is asked again
// in RetryAfter): a gate that cannot see does not open.
func (g *Gate) Decide(ctx context.Context, c Change) Decision {
	now := time.Now()
	if g.Now != nil {
		now = g.Now()
	}
	mode, problem := ModeFor(g.Mode, c.ConfigMaps)
	if mode != Waves {
		d := Decide(c.Revision, mode, g.Plan, c.Start, 0, now, nil)
		d.Reason = joinReason(d.Reason, problem)
		return d
	}
	wave, err := g.waveOf(ctx, c.Revision)
	var peers []Peer
	if err == nil && g.Peers != nil {
		peers, err = g.Peers.States(ctx)
	}
	if err != nil {
		return Decision{Revision: c.Revision, Mode: mode, Wave: wave, Phase: Waiting, OpensAt: now.Add(RetryAfter),
			Reason: fmt.Sprintf("revision %s waits: %v", c.Revision, err)}
	}
	d := Decide(c.Revision, mode, g.Plan, c.Start, wave, now, peers)
	d.Reason = joinReason(d.Reason, problem)
	d.Soak = g.Plan.Interval
	return d
}

// At is where a node that is at the change stands: Applied, in the
// change's mode and (waves) its wave. The peers are not read.
func (g *Gate) At(ctx context.Context, c Change) Decision {
	mode, _ := ModeFor(g.Mode, c.ConfigMaps)
	d := Decision{Revision: c.Revision, Apply: true, Phase: Applied, Mode: mode}
	if mode == Waves {
		d.Wave, _ = g.waveOf(ctx, c.Revision)
		d.Soak = g.Plan.Interval
	}
	return d
}

func (g *Gate) waveOf(ctx context.Context, rev string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waveRev == rev && rev != "" {
		return g.wave, nil
	}
	var lbls map[string]string
	if g.Plan.bySelector() && g.NodeLabels != nil {
		var err error
		if lbls, err = g.NodeLabels(ctx); err != nil {
			return 0, fmt.Errorf("read the node's labels for --rollout-canary-selector: %w", err)
		}
	}
	g.wave, g.waveRev = g.Plan.WaveOf(g.Node, lbls), rev
	return g.wave, nil
}

func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
