package scale

import (
	"fmt"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
)

// idlePeriods are the agents' periods for an idle window: the defaults
// (resync 5m, token check 10m) for a window of 10 minutes or more, else
// scaled down so that the window holds six resyncs and four token checks.
func idlePeriods(window time.Duration) (resync, check time.Duration) {
	if window >= 10*time.Minute {
		return 5 * time.Minute, 10 * time.Minute
	}
	return window / 6, window / 4
}

// apiServerSample is the API server's RSS (KiB) and CPU time now.
func (h *harness) apiServerSample() (int64, time.Duration, error) {
	pid, err := h.c.cp.APIServerPID()
	if err != nil || pid == 0 {
		return 0, 0, fmt.Errorf("kube-apiserver pid: %v", err)
	}
	rss, _, err := measure.Memory(pid)
	if err != nil {
		return 0, 0, err
	}
	cpu, err := measure.CPU(pid)
	return rss, cpu, err
}

// idleBaseline measures the API server with no agent running.
func (h *harness) idleBaseline(window time.Duration) (rssKiB int64, cpuPct float64, err error) {
	_, cpu0, err := h.apiServerSample()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var rss int64
	var cpu1 time.Duration
	err = sampleFor(window, 10*time.Second, func() (err error) {
		rss, cpu1, err = h.apiServerSample()
		return err
	})
	return rss, pct(cpu1-cpu0, time.Since(start)), err
}

// sampleFor calls sample at once, every period, and when the window ends.
func sampleFor(window, every time.Duration, sample func() error) error {
	end := time.NewTimer(window)
	defer end.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := sample(); err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-end.C:
			return sample()
		}
	}
}

func pct(cpu, wall time.Duration) float64 { return 100 * float64(cpu) / float64(wall) }

// idle measures a started fleet over the window: its requests, scaled to
// an hour at the default periods, its memory, and the API server's.
func (h *harness) idle(f *fleet, window, resync, check time.Duration, res *idleResult) error {
	h.c.audit.settle(h.c.audit.mark(), byAgents, 3*time.Second, time.Minute)
	mark := h.c.audit.mark()
	_, cpu0, err := h.apiServerSample()
	if err != nil {
		return err
	}
	start := time.Now()
	rss := make([]int64, h.n)
	anon := make([]int64, h.n)
	endRSS := make([]int64, h.n)
	endAnon := make([]int64, h.n)
	err = sampleFor(window, 10*time.Second, func() error {
		for i, n := range f.nodes {
			r, a, err := measure.Memory(n.cmd.Process.Pid)
			if err != nil {
				return fmt.Errorf("memory of %s: %w", n.name, err)
			}
			rss[i], anon[i] = max(rss[i], r), max(anon[i], a)
			endRSS[i], endAnon[i] = r, a
		}
		return nil
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	apiRSS, cpu1, err := h.apiServerSample()
	if err != nil {
		return err
	}
	res.WindowS, res.ResyncS, res.TokenCheckS = elapsed.Seconds(), resync.Seconds(), check.Seconds()
	res.APIRSSAfterMiB = float64(apiRSS) / 1024
	res.APICPUIdle = pct(cpu1-cpu0, elapsed)
	res.RSSMiBP50, res.RSSMiBMax = spreadKiB(rss)
	res.AnonMiBP50, res.AnonMiBMax = spreadKiB(anon)
	res.EndRSSMiBP50, res.EndRSSMiBMax = spreadKiB(endRSS)
	res.EndAnonMiBP50, res.EndAnonMiBMax = spreadKiB(endAnon)
	end := start.Add(elapsed)
	var reqs []request
	for _, r := range h.c.audit.since(mark, byAgents) {
		if r.At.Before(end) {
			reqs = append(reqs, r)
		}
	}
	res.Requests = counts(reqs)
	lastLease := make([]time.Time, h.n)
	var intervals []time.Duration
	for _, r := range reqs {
		if i := agentIndex(r); i >= 0 && i < h.n && r.key() == "update leases" {
			if !lastLease[i].IsZero() {
				intervals = append(intervals, r.At.Sub(lastLease[i]))
			}
			lastLease[i] = r.At
		}
	}
	res.LeaseInterval = spreadOf(intervals)
	res.PerAgentHour = map[string]float64{}
	for k, c := range res.Requests {
		res.PerAgentHour[k] = perHourAtDefaults(k, c, h.n, elapsed, resync, check)
		res.PerAgentHourTotal += res.PerAgentHour[k]
		if verb, resource, _ := strings.Cut(k, " "); strings.HasPrefix(resource, "nodes") && verb != "get" && verb != "list" && verb != "watch" {
			res.NodeWrites += c
		}
	}
	return nil
}

// perHourAtDefaults scales a count in the window to one agent's hour at the
// default periods: token checks (SelfSubjectReviews) by the number of
// token-check periods in the window, watches by time, anything else by the
// number of resync periods (a pass renews the Lease and may make more).
func perHourAtDefaults(key string, count, agents int, window, resync, check time.Duration) float64 {
	perAgent := float64(count) / float64(agents)
	switch {
	case strings.HasSuffix(key, " selfsubjectreviews"):
		return perAgent / (window.Seconds() / check.Seconds()) * float64(time.Hour/(10*time.Minute))
	case strings.HasPrefix(key, "watch "):
		return perAgent * time.Hour.Seconds() / window.Seconds()
	default:
		return perAgent / (window.Seconds() / resync.Seconds()) * float64(time.Hour/(5*time.Minute))
	}
}
