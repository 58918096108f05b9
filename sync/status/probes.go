package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health tells the kubelet whether the reconcile loop is alive (/healthz)
// and whether the agent is fit to do its job (/readyz).
//
// The line readiness draws: the agent's own faults make it NotReady (its
// directories unwritable, its own credential or RBAC refused by the API
// server, a write of its own that failed), so a rollout of a broken agent
// stops at the first node. The cluster's inputs never do: a bad ConfigMap or
// template, a rejected CNI token, a hand edit are the node's state, reported
// in the condition, events and metrics by an agent that is Ready.
type Health struct {
	// WedgedAfter is how long one reconcile may run, and how long past a
	// resync period the loop may go without finishing one, before it is
	// called wedged.
	WedgedAfter time.Duration
	// ResyncPeriod is how often the loop runs at the least.
	ResyncPeriod time.Duration
	// Extra, when set, is one more liveness check (a dead token that cannot
	// be renewed).
	Extra func() error
	// Faults, when set, names the agent's own faults; /readyz fails while
	// it returns one. It must never fail for the cluster's inputs.
	Faults func() error
	Now    func() time.Time

	mu        sync.Mutex
	busySince time.Time
	lastDone  time.Time
	ready     bool
}

func (h *Health) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Begin marks a reconcile as running.
func (h *Health) Begin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busySince = h.now()
}

// End marks it done; ok: it was reported, so the agent is ready.
func (h *Health) End(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busySince, h.lastDone = time.Time{}, h.now()
	if ok {
		h.ready = true
	}
}

// Live reports a wedged loop.
func (h *Health) Live() error {
	h.mu.Lock()
	busy, last := h.busySince, h.lastDone
	h.mu.Unlock()
	now := h.now()
	if !busy.IsZero() && now.Sub(busy) > h.WedgedAfter {
		return fmt.Errorf("a reconcile has been running for %s", now.Sub(busy).Round(time.Second))
	}
	if !last.IsZero() && busy.IsZero() && now.Sub(last) > h.ResyncPeriod+h.WedgedAfter {
		return fmt.Errorf("no reconcile for %s", now.Sub(last).Round(time.Second))
	}
	if h.Extra != nil {
		return h.Extra()
	}
	return nil
}

// Ready reports whether a pass has completed and been reported (caches
// synced, the condition patched), whatever the node's state, and the agent
// has no fault of its own (Faults).
func (h *Health) Ready() error {
	h.mu.Lock()
	ready := h.ready
	h.mu.Unlock()
	if !ready {
		return errors.New("no reconcile reported yet")
	}
	if h.Faults != nil {
		if err := h.Faults(); err != nil {
			return fmt.Errorf("the agent cannot do its job: %w", err)
		}
	}
	return nil
}

// Serve serves /metrics, /healthz and /readyz on addr until ctx ends.
func Serve(ctx context.Context, addr string, m *Metrics, h *Health, logger *slog.Logger) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	probe := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}
	}
	mux.Handle("/healthz", probe(h.Live))
	mux.Handle("/readyz", probe(h.Ready))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}
