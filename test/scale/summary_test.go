package scale

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

type startupResult struct {
	Agents   int     `json:"agents"`
	LaunchMs float64 `json:"launchMs"` // to exec every agent
	// Ready is, for each agent, from the first launch until its Node showed
	// CalicoCNIConfigDrift InSync.
	Ready spread `json:"ready"`
	// PerAgent is each agent's own requests until it was ready, by verb and
	// resource, averaged over the agents; PerAgentMax the most any made.
	PerAgent    map[string]float64 `json:"perAgent"`
	PerAgentMax int                `json:"perAgentMax"`
	// NodeTokenRequests are those made with the nodes' tokens (the guard's
	// checks), cluster-wide, until every agent was ready.
	NodeTokenRequests map[string]int `json:"nodeTokenRequests"`
}

type changeResult struct {
	// Current is, per node, from the change (for a Secret: from the moment
	// the token controller had populated it) until the node's file had it.
	Current spread `json:"current"`
	// Requests are the agents' requests the change caused, cluster-wide.
	Requests          map[string]int `json:"requests"`
	NodeStatusWrites  int            `json:"nodeStatusWrites"`
	EventsTotal       int            `json:"eventsTotal"`
	EventsMaxPerAgent int            `json:"eventsMaxPerAgent"`
	// Conditions counts the reasons Nodes' conditions changed to; Events
	// the events on the Nodes by reason (an event repeated counts once).
	Conditions map[string]int `json:"conditionChanges"`
	Events     map[string]int `json:"eventReasons"`
	// ConditionsAfter counts the Nodes by their condition's reason once the
	// agents were quiet.
	ConditionsAfter map[string]int `json:"conditionsAfter"`
	// Rejected counts requests answered 401 (a rejected token), by anyone.
	Rejected map[string]int `json:"rejected401"`
	// CPU used from the change until every file was current: all agents
	// together, and the API server, against the wall time (2 cores here).
	AgentCPUMs float64 `json:"agentCPUMs"`
	APICPUMs   float64 `json:"apiServerCPUMs"`
	WallMs     float64 `json:"wallMs"`
}

type guardResult struct {
	// Verdict is, per node, from calico-node's write until the agent's
	// status file showed that token accepted.
	Verdict        spread         `json:"verdict"`
	WrittenInMs    float64        `json:"writtenInMs"` // to write every node's kubeconfig
	AgentWrites    float64        `json:"agentWrites"` // calico_cni_sync_writes_total, summed delta
	FilesRewritten int            `json:"filesRewritten"`
	Requests       map[string]int `json:"requests"`
}

type restartResult struct {
	OutageMs float64 `json:"outageMs"` // the API server killed until ready again (and kube-controller-manager)
	// WatchesBack is, per agent, from the API server's first logged request
	// after the restart until the agent had re-opened all its watches.
	WatchesBack spread `json:"watchesBack"`
	// Converged is, per node, from the ConfigMap change made as soon as the
	// restart returned until the node's file had it.
	Converged spread `json:"converged"`
	// Relists are the agents' list requests, from the API server's first
	// logged request after the restart: first, p50, p99, last, and how many
	// fell in each second.
	RelistFirstMs float64        `json:"relistFirstMs"`
	Relists       spread         `json:"relists"`
	RelistPerSec  []int          `json:"relistPerSecond"`
	Requests      map[string]int `json:"requests"`
}

type idleResult struct {
	WindowS     float64        `json:"windowSeconds"`
	ResyncS     float64        `json:"resyncSeconds"`
	TokenCheckS float64        `json:"tokenCheckSeconds"`
	Requests    map[string]int `json:"requests"` // cluster-wide in the window
	// PerAgentHour is requests per agent per hour at the default periods.
	PerAgentHour      map[string]float64 `json:"perAgentHour"`
	PerAgentHourTotal float64            `json:"perAgentHourTotal"`
	NodeWrites        int                `json:"nodeWrites"`
	// LeaseInterval is the time between one agent's Lease renewals.
	LeaseInterval spread  `json:"leaseInterval"`
	RSSMiBP50     float64 `json:"rssMiBP50"`
	RSSMiBMax     float64 `json:"rssMiBMax"`
	AnonMiBP50    float64 `json:"anonMiBP50"`
	AnonMiBMax    float64 `json:"anonMiBMax"`
	// The same at the end of the window (the above are each agent's peak
	// over samples every 10 s, from the window's start).
	EndRSSMiBP50    float64 `json:"endRSSMiBP50"`
	EndRSSMiBMax    float64 `json:"endRSSMiBMax"`
	EndAnonMiBP50   float64 `json:"endAnonMiBP50"`
	EndAnonMiBMax   float64 `json:"endAnonMiBMax"`
	APIRSSBeforeMiB float64 `json:"apiServerRSSBeforeMiB"`
	APIRSSAfterMiB  float64 `json:"apiServerRSSAfterMiB"`
	APICPUBaseline  float64 `json:"apiServerCPUBaselinePct"` // % of one core, no agents
	APICPUIdle      float64 `json:"apiServerCPUIdlePct"`     // % of one core, agents idle
	// The API server's RSS before the first fleet started, and once it was ready.
	APIRSSFirstMiB float64 `json:"apiServerRSSBeforeFirstFleetMiB"`
	APIRSSReadyMiB float64 `json:"apiServerRSSFirstFleetReadyMiB"`
}

type result struct {
	N            int           `json:"n"`
	WallS        float64       `json:"wallSeconds"`
	StartToday   startupResult `json:"startupToday"`
	StartSeed    startupResult `json:"startupSeed"`
	StartIdle    startupResult `json:"startupIdleFleet"`
	ConfigMap    changeResult  `json:"configMapChange"`
	Guard        guardResult   `json:"guardRefresher"`
	Restart      restartResult `json:"apiServerRestart"`
	TokenSecret  changeResult  `json:"tokenSecretRegenerated"`
	Idle         idleResult    `json:"idle"`
	UncleanStops []string      `json:"uncleanStops,omitempty"`
}

func (s spread) String() string {
	return fmt.Sprintf("p50 %.0f ms, p99 %.0f ms, max %.0f ms", s.P50, s.P99, s.Max)
}

func formatPer(c map[string]float64) string {
	if len(c) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

// print writes the summary table for one N.
func (r *result) print(w io.Writer) {
	row := func(what, value string) { _, _ = fmt.Fprintf(w, "| %s | %s |\n", what, value) }
	_, _ = fmt.Fprintf(w, "\n## N = %d agents (wall time %.0f s)\n\n| measurement | value |\n|---|---|\n", r.N, r.WallS)
	for _, s := range []struct {
		name string
		r    startupResult
	}{{"today's install", r.StartToday}, {"seed's install", r.StartSeed}, {"idle fleet", r.StartIdle}} {
		row("start-up, "+s.name+": all ready", fmt.Sprintf("%s (exec of all %.0f ms)", s.r.Ready, s.r.LaunchMs))
		row("start-up, "+s.name+": requests per agent until ready", fmt.Sprintf("%s (max %d)", formatPer(s.r.PerAgent), s.r.PerAgentMax))
		row("start-up, "+s.name+": node-token requests, all nodes", formatCounts(s.r.NodeTokenRequests, 1))
	}
	change := func(what string, c changeResult) {
		row(what+": node file current", c.Current.String())
		row(what+": requests, all nodes", formatCounts(c.Requests, 1))
		row(what+": Node status writes / events (max per node)", fmt.Sprintf("%d / %d (%d)", c.NodeStatusWrites, c.EventsTotal, c.EventsMaxPerAgent))
		row(what+": Node condition changes / event reasons", formatCounts(c.Conditions, 1)+" / "+formatCounts(c.Events, 1))
		row(what+": Node conditions once quiet / requests answered 401", formatCounts(c.ConditionsAfter, 1)+" / "+formatCounts(c.Rejected, 1))
		row(what+": CPU until all current: agents / API server, in wall", fmt.Sprintf("%.0f ms / %.0f ms in %.0f ms", c.AgentCPUMs, c.APICPUMs, c.WallMs))
	}
	change("ConfigMap change", r.ConfigMap)
	change("token Secret regenerated", r.TokenSecret)
	g := r.Guard
	row("guard: refresher rewrites every kubeconfig in", fmt.Sprintf("%.0f ms", g.WrittenInMs))
	row("guard: write to verdict", g.Verdict.String())
	row("guard: agent writes / files rewritten", fmt.Sprintf("%.0f / %d", g.AgentWrites, g.FilesRewritten))
	row("guard: requests, all nodes", formatCounts(g.Requests, 1))
	x := r.Restart
	row("restart: outage (kill to ready)", fmt.Sprintf("%.0f ms", x.OutageMs))
	row("restart: every watch back", x.WatchesBack.String())
	row("restart: change right after, converged", x.Converged.String())
	if x.Relists.N == 0 {
		row("restart: relists", "none (every watch resumed from its resourceVersion)")
	} else {
		row("restart: relists (from API back)", fmt.Sprintf("%d: first %.0f ms, %s; per second %v", x.Relists.N, x.RelistFirstMs, x.Relists, x.RelistPerSec))
	}
	row("restart: requests, all nodes", formatCounts(x.Requests, 1))
	i := r.Idle
	row("idle: window (resync, token check)", fmt.Sprintf("%.0f s (%.0f s, %.0f s)", i.WindowS, i.ResyncS, i.TokenCheckS))
	row("idle: requests in window, all nodes", formatCounts(i.Requests, 1))
	row("idle: per agent per hour at default periods", fmt.Sprintf("%.1f (%s)", i.PerAgentHourTotal, formatPer(i.PerAgentHour)))
	row("idle: Node writes", fmt.Sprint(i.NodeWrites))
	row("idle: one agent's Lease renewals apart", i.LeaseInterval.String())
	row("idle: agent RSS p50/max, peak in window (at its end)", fmt.Sprintf("%.1f / %.1f MiB (%.1f / %.1f MiB)", i.RSSMiBP50, i.RSSMiBMax, i.EndRSSMiBP50, i.EndRSSMiBMax))
	row("idle: agent anonymous p50/max, peak in window (at its end)", fmt.Sprintf("%.1f / %.1f MiB (%.1f / %.1f MiB)", i.AnonMiBP50, i.AnonMiBMax, i.EndAnonMiBP50, i.EndAnonMiBMax))
	row("idle: API server RSS without / with agents", fmt.Sprintf("%.0f / %.0f MiB (%.2f MiB per agent)", i.APIRSSBeforeMiB, i.APIRSSAfterMiB, (i.APIRSSAfterMiB-i.APIRSSBeforeMiB)/float64(r.N)))
	row("API server RSS before the first fleet / with it ready", fmt.Sprintf("%.0f / %.0f MiB", i.APIRSSFirstMiB, i.APIRSSReadyMiB))
	row("idle: API server CPU without / with agents", fmt.Sprintf("%.2f %% / %.2f %% of a core", i.APICPUBaseline, i.APICPUIdle))
	if len(r.UncleanStops) > 0 {
		row("unclean stops", strings.Join(r.UncleanStops, "; "))
	}
}

// writeJSON writes the result to path; {N} in path is replaced by N.
func (r *result) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(strings.ReplaceAll(path, "{N}", fmt.Sprint(r.N)), append(b, '\n'), 0o644)
}
