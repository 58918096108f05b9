package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
)

// harness is one run: the control plane, the agent binary, the agents'
// identities and the fleets started so far.
type harness struct {
	ctx    context.Context
	c      *cluster
	root   string
	binary string
	tokens []string
	ready  *readiness
	n      int
	fleets []*fleet
	// agentEnv is more environment for every agent ($SCALE_AGENT_ENV, e.g.
	// "GOGC=50 GODEBUG=gctrace=1"), to try a runtime setting at scale.
	agentEnv []string
}

// settings reads N and IDLE from the environment.
func settings() (int, time.Duration, error) {
	n, idle := 50, 2*time.Minute
	if v := os.Getenv("N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return 0, 0, fmt.Errorf("N=%q: want a positive number", v)
		}
	}
	if v := os.Getenv("IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil || idle < 30*time.Second {
			return 0, 0, fmt.Errorf("IDLE=%q: want a duration of at least 30s", v)
		}
	}
	return n, idle, nil
}

// BenchmarkScale runs N agents against one control plane through start-up,
// a ConfigMap change, calico-node's token refresher under the guard, an
// API server restart, the seed's token Secret regeneration and an idle
// window, and prints a table of what it measured (JSON to $SCALE_JSON).
func BenchmarkScale(b *testing.B) {
	n, idleWindow, err := settings()
	if err != nil {
		b.Fatal(err)
	}
	begin := time.Now()
	h := setup(b, n)
	res := &result{N: n}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	stop := func(f *fleet) {
		if err := h.stopFleet(f); err != nil {
			res.UncleanStops = append(res.UncleanStops, err.Error())
		}
	}
	b.ResetTimer()

	// Today's install: start-up, a ConfigMap change, the refresher, a restart.
	noAgents, _, err := h.apiServerSample()
	must(err)
	a, st, err := h.startFleet(fleetSpec{name: "a"})
	must(err)
	res.StartToday = st
	withAgents, _, err := h.apiServerSample()
	must(err)
	b.Logf("start-up (today's install) done after %v", time.Since(begin).Round(time.Second))
	res.ConfigMap, err = h.configMapChange(a, 1410)
	must(err)
	res.Guard, err = h.guardRefresh(a)
	must(err)
	res.Restart, err = h.apiServerRestart(a, 1420)
	must(err)
	stop(a)
	b.Logf("today's install done after %v", time.Since(begin).Round(time.Second))

	// The seed's install: the legacy token Secret regenerated.
	secret, err := h.c.installSeed(h.ctx)
	must(err)
	s, st, err := h.startFleet(fleetSpec{name: "b", seed: true})
	must(err)
	res.StartSeed = st
	res.TokenSecret, err = h.tokenSecretRegenerated(s, secret, "calico-node-token-s0002")
	must(err)
	stop(s)
	b.Logf("seed's install done after %v", time.Since(begin).Round(time.Second))

	// Idle, with the periods scaled to the window.
	baseRSS, baseCPU, err := h.idleBaseline(min(30*time.Second, idleWindow/4))
	must(err)
	resync, check := idlePeriods(idleWindow)
	c, st, err := h.startFleet(fleetSpec{name: "c", extra: []string{"--resync-period", resync.String(), "--token-check-period", check.String()}})
	must(err)
	res.StartIdle = st
	res.Idle.APIRSSBeforeMiB, res.Idle.APICPUBaseline = float64(baseRSS)/1024, baseCPU
	res.Idle.APIRSSFirstMiB, res.Idle.APIRSSReadyMiB = float64(noAgents)/1024, float64(withAgents)/1024
	must(h.idle(c, idleWindow, resync, check, &res.Idle))
	stop(c)
	b.StopTimer()

	res.WallS = time.Since(begin).Seconds()
	res.print(os.Stdout)
	if path := os.Getenv("SCALE_JSON"); path != "" {
		must(res.writeJSON(path))
	}
	b.ReportMetric(res.ConfigMap.Current.Max, "configmap-max-ms")
	b.ReportMetric(res.Idle.PerAgentHourTotal, "idle-req/agent/h")
	b.ReportMetric(res.Idle.AnonMiBMax, "anon-MiB-max")
}

// setup starts the control plane (with an audit log), builds the agent,
// installs Calico's objects and the agents' identities. Everything is torn
// down at cleanup: agents killed, the control plane stopped (the API server
// with SIGKILL), the files removed.
func setup(b *testing.B, n int) *harness {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	b.Cleanup(cancel)
	root, err := os.MkdirTemp("", "calico-cni-sync-scale-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(root) })
	// The agents run as users of their own, and must reach their directories.
	if err := os.Chmod(root, 0o755); err != nil {
		b.Fatal(err)
	}
	h := &harness{ctx: ctx, root: root, n: n, agentEnv: strings.Fields(os.Getenv("SCALE_AGENT_ENV"))}
	if custom := os.Getenv("SCALE_AGENT_BINARY"); custom != "" {
		// A build of one's own (e.g. with a profiler), copied where every
		// agent's user may run it.
		h.binary, err = copyBinary(custom, filepath.Join(root, "calico-cni-sync-custom"))
	} else {
		h.binary, err = buildAgent(root)
	}
	if err != nil {
		b.Fatal(err)
	}
	flags, auditPath, err := auditFlags(root)
	if err != nil {
		b.Fatal(err)
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{APIServerFlags: flags})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cp.Stop() })
	b.Cleanup(h.killAll)
	watchCtx, stopWatch := context.WithCancel(ctx)
	b.Cleanup(stopWatch) // before the control plane stops
	h.c = &cluster{cp: cp, audit: newAuditLog(auditPath), admin: filepath.Join(root, "admin.kubeconfig")}
	if err := cp.WriteKubeconfig(h.c.admin, cp.Config); err != nil {
		b.Fatal(err)
	}
	h.ready = watchReadiness(watchCtx, cp.Client)
	if h.tokens, err = h.c.agentIdentities(ctx, n); err != nil {
		b.Fatal(err)
	}
	if err := h.c.installOperator(ctx, root); err != nil {
		b.Fatal(err)
	}
	return h
}
