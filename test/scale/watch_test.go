package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// readiness records when each Node first shows CalicoCNIConfigDrift False
// with reason InSync: the agent has synced its caches, completed a pass and
// reported it. One watch for every node, so that many agents are not
// probed over HTTP while they start.
type readiness struct {
	mu    sync.Mutex
	ready map[string]time.Time
	// reasons counts each node's condition reasons as they changed, for a
	// window's report of what the nodes went through.
	last    map[string]string
	reasons map[string]int
}

// reasonsNow counts the fleet's Nodes by their condition's reason now.
func (r *readiness) reasonsNow(f *fleet) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, n := range f.nodes {
		out[r.last[n.name]]++
	}
	return out
}

// takeReasons returns the condition reasons the Nodes went to since the
// last call, and starts counting afresh.
func (r *readiness) takeReasons() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reasons
	r.reasons = map[string]int{}
	return out
}

func watchReadiness(ctx context.Context, client kubernetes.Interface) *readiness {
	r := &readiness{ready: map[string]time.Time{}, last: map[string]string{}, reasons: map[string]int{}}
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "nodes", "", fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	record := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		for _, c := range n.Status.Conditions {
			if c.Type != "CalicoCNIConfigDrift" {
				continue
			}
			r.mu.Lock()
			if c.Status == corev1.ConditionFalse && c.Reason == "InSync" {
				if _, seen := r.ready[n.Name]; !seen {
					r.ready[n.Name] = time.Now()
				}
			}
			if prev, seen := r.last[n.Name]; seen && prev != c.Reason {
				r.reasons[c.Reason]++
			}
			r.last[n.Name] = c.Reason
			r.mu.Unlock()
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, obj any) { record(obj) }})
	go inf.Run(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	return r
}

// wait returns each node's ready time once all are ready.
func (r *readiness) wait(ctx context.Context, nodes []*node, timeout time.Duration) ([]time.Time, error) {
	var out []time.Time
	missing := 0
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		out = make([]time.Time, len(nodes))
		missing = 0
		r.mu.Lock()
		for i, n := range nodes {
			if out[i] = r.ready[n.name]; out[i].IsZero() {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return true, nil
		}
		for _, n := range nodes {
			if err := n.exited(); err != nil {
				return false, err
			}
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return nil, fmt.Errorf("%d of %d agents not ready within %v", missing, len(nodes), timeout)
	}
	return out, err
}

// fileWatch watches every node's CNI directory, so that the time a node's
// file became current is taken when it changed, not at a polling tick.
type fileWatch struct {
	w     *fsnotify.Watcher
	nodes []*node
	byDir map[string]int
}

func newFileWatch(nodes []*node) (*fileWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	f := &fileWatch{w: w, nodes: nodes, byDir: map[string]int{}}
	for i, n := range nodes {
		if err := w.Add(n.net); err != nil {
			_ = w.Close()
			return nil, err
		}
		f.byDir[n.net] = i
	}
	return f, nil
}

func (f *fileWatch) close() { _ = f.w.Close() }

// wait returns, for each node, when its file name first satisfied check,
// checking each file on every event in its directory and every 100 ms.
func (f *fileWatch) wait(name string, check func(i int, content []byte) bool, timeout time.Duration) ([]time.Time, error) {
	done := make([]time.Time, len(f.nodes))
	pending := len(f.nodes)
	try := func(i int) {
		if !done[i].IsZero() {
			return
		}
		b, err := os.ReadFile(filepath.Join(f.nodes[i].net, name))
		if err == nil && check(i, b) {
			done[i] = time.Now()
			pending--
		}
	}
	for i := range f.nodes {
		try(i)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for pending > 0 {
		select {
		case ev, ok := <-f.w.Events:
			if !ok {
				return nil, fmt.Errorf("file watcher closed")
			}
			if filepath.Base(ev.Name) == name {
				try(f.byDir[filepath.Dir(ev.Name)])
			}
		case err := <-f.w.Errors:
			_ = err // events lost: the 100 ms checks still find each file
		case <-tick.C:
			for i := range f.nodes {
				try(i)
			}
		case <-deadline:
			return nil, fmt.Errorf("%s: %d of %d nodes not current within %v", name, pending, len(f.nodes), timeout)
		}
	}
	return done, nil
}

// drain discards pending events, so that a later wait starts fresh.
func (f *fileWatch) drain() {
	for {
		select {
		case <-f.w.Events:
		case err := <-f.w.Errors:
			_ = err
		default:
			return
		}
	}
}
