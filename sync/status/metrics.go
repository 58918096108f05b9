package status

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

// Metrics are the agent's Prometheus metrics, on their own registry so tests
// can run several agents in one process.
type Metrics struct {
	Registry      *prometheus.Registry
	Reconciles    *prometheus.CounterVec
	Writes        *prometheus.CounterVec
	FileState     *prometheus.GaugeVec
	TokenExpiry   prometheus.Gauge
	TokenAccepted prometheus.Gauge
	// CredentialVerdict counts the node's CNI credentials by plugin and
	// verdict.
	CredentialVerdict *prometheus.GaugeVec
	plugins           map[string]bool // other plugins whose credentials were counted
	LastSuccess       prometheus.Gauge
	TriggerToDisk     prometheus.Histogram
}

// NewMetrics registers every metric, with the Go and process collectors.
func NewMetrics() *Metrics {
	const ns = "calico_cni_sync"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconciles_total",
			Help: "Reconcile passes, by result (success or error)."}, []string{"result"}),
		Writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "writes_total",
			Help: "Files written, by file and by the state that caused the write."}, []string{"file", "reason"}),
		FileState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "file_state",
			Help: "1 for the current state of each managed file, 0 for the others."}, []string{"file", "state"}),
		TokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "token_expiry_timestamp_seconds",
			Help: "Expiry of the current token from its claims (0 when it has none)."}),
		TokenAccepted: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "token_accepted",
			Help: "1 when the API server accepted the token on disk at the last check, 0 when it rejected it, -1 unknown."}),
		CredentialVerdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "credential_verdict",
			Help: "The node's CNI credentials by plugin and verdict (what the plugin's own first request gets: ok, expired, rejected, forbidden, untrusted, unreachable)."},
			[]string{"plugin", "verdict"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_success_timestamp_seconds",
			Help: "When the last reconcile succeeded."}),
		TriggerToDisk: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "trigger_to_disk_seconds",
			Help:    "Time from a trigger (ConfigMap, token, file event) to the file being on disk.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	m.TokenAccepted.Set(-1)
	// Calico's credential has a series per verdict from the start, at 0
	// until a probe gives one.
	m.setVerdicts(probe.PluginCalico, nil)
	// Both results exist from the start, at 0: increase() cannot see the
	// first error of a counter that appears at 1.
	m.Reconciles.WithLabelValues("success")
	m.Reconciles.WithLabelValues("error")
	m.Registry.MustRegister(m.Reconciles, m.Writes, m.FileState, m.TokenExpiry, m.TokenAccepted, m.CredentialVerdict, m.LastSuccess, m.TriggerToDisk,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records one reconcile pass.
func (m *Metrics) Observe(rep *reconcile.Report, pass *reconcile.Pass, err error, triggered time.Time) {
	if err != nil {
		m.Reconciles.WithLabelValues("error").Inc()
	} else {
		m.Reconciles.WithLabelValues("success").Inc()
		m.LastSuccess.SetToCurrentTime()
	}
	for _, f := range rep.Files {
		for _, s := range cniconf.States() {
			v := 0.0
			if s == f.State {
				v = 1
			}
			m.FileState.WithLabelValues(f.Path, string(s)).Set(v)
		}
	}
	wrote := false
	if pass != nil {
		for _, o := range pass.Outcomes {
			if o.Action != cniconf.ActionNone {
				m.Writes.WithLabelValues(o.Now.Path, string(o.Found)).Inc()
				wrote = true
			}
		}
	}
	if wrote && !triggered.IsZero() {
		m.TriggerToDisk.Observe(time.Since(triggered).Seconds())
	}
	if rep.Token.ExpiresAt != nil {
		m.TokenExpiry.Set(float64(rep.Token.ExpiresAt.Unix()))
	} else if len(rep.Files) > 0 && rep.Files[0].State != cniconf.Error {
		m.TokenExpiry.Set(0) // a token with no expiry (a legacy Secret's)
	}
	if rep.Token.Verdict != "" {
		m.setVerdicts(probe.PluginCalico, map[string]int{rep.Token.Verdict: 1})
	}
	if rep.Credentials != nil {
		// Other plugins' credentials, counted by verdict; a plugin no
		// longer found reads 0.
		counts := map[string]map[string]int{}
		for p := range m.plugins {
			counts[p] = map[string]int{}
		}
		for _, c := range rep.Credentials {
			if c.Plugin == probe.PluginCalico || c.Verdict == "" {
				continue
			}
			if counts[c.Plugin] == nil {
				counts[c.Plugin] = map[string]int{}
			}
			counts[c.Plugin][string(c.Verdict)]++
		}
		if m.plugins == nil {
			m.plugins = map[string]bool{}
		}
		for p, n := range counts {
			m.setVerdicts(p, n)
			m.plugins[p] = true
		}
	}
	switch {
	case rep.Token.Accepted == nil:
		m.TokenAccepted.Set(-1)
	case *rep.Token.Accepted:
		m.TokenAccepted.Set(1)
	default:
		m.TokenAccepted.Set(0)
	}
}

// verdicts are the values of credential_verdict's verdict label.
var verdicts = []probe.Verdict{probe.OK, probe.Expired, probe.Rejected, probe.Forbidden, probe.Untrusted, probe.Unreachable}

// setVerdicts sets one plugin's credential counts, every verdict present
// (0 when none has it), so that a verdict that ends reads 0.
func (m *Metrics) setVerdicts(plugin string, counts map[string]int) {
	for _, v := range verdicts {
		m.CredentialVerdict.WithLabelValues(plugin, string(v)).Set(float64(counts[string(v)]))
	}
}
