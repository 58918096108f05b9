package agent

import (
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// queueKey is the only key: the node's files are reconciled as one.
const queueKey = "node"

// Queue is the agent's one rate-limited workqueue key: bursts of triggers
// coalesce into one pass. It is made before the inputs, whose watches
// trigger it, and handed to NewAgent.
type Queue struct {
	q         workqueue.TypedRateLimitingInterface[string]
	triggered atomic.Int64 // unix nanos of the oldest trigger not yet reconciled
	logger    *slog.Logger
}

// NewQueue makes the queue.
func NewQueue(logger *slog.Logger) *Queue {
	return &Queue{
		q: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "calico-cni-sync"}),
		logger: logger,
	}
}

// Trigger asks for a pass. The time of the oldest pending trigger is kept
// for the latency histogram.
func (q *Queue) Trigger(why string) {
	q.triggered.CompareAndSwap(0, time.Now().UnixNano())
	q.logger.Debug("trigger", "why", why)
	q.q.Add(queueKey)
}

// get waits for the key; it returns the oldest trigger's time.
func (q *Queue) get() (since int64, quit bool) {
	_, quit = q.q.Get()
	if quit {
		return 0, true
	}
	return q.triggered.Swap(0), false
}

func (q *Queue) done() { q.q.Done(queueKey) }

// keepTriggered keeps a held pass's trigger time for the pass that follows.
func (q *Queue) keepTriggered(since int64) { q.triggered.CompareAndSwap(0, since) }

// after runs the key again in d, its failures forgotten.
func (q *Queue) after(d time.Duration) {
	q.q.Forget(queueKey)
	q.q.AddAfter(queueKey, d)
}

// recheckAfter runs the key again in d, keeping its failures: an earlier
// run (a backoff, a token renewal) is kept too.
func (q *Queue) recheckAfter(d time.Duration) { q.q.AddAfter(queueKey, d) }

func (q *Queue) backoff() { q.q.AddRateLimited(queueKey) }

func (q *Queue) forget() { q.q.Forget(queueKey) }

func (q *Queue) shutDown() { q.q.ShutDown() }
