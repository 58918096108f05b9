package scale

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// fleet is N agents started together, one per node.
type fleet struct {
	name  string
	nodes []*node
	files *fileWatch
	// watches is how many watches each agent opened at start-up: what it
	// must re-open after an API server restart.
	watches []int
}

// fleetSpec says how a fleet's agents run.
type fleetSpec struct {
	name string
	// seed runs the agents on the seed's install (calico-config and the
	// legacy token Secret, token policy own); else they discover today's
	// operator install with no input flags, as the manifests run them
	// (every fleet adds --rollout=immediate).
	seed  bool
	extra []string // more agent flags (periods)
}

// startFleet creates the nodes, starts every agent at once and waits until
// all are ready, measuring how long that took and what it cost.
func (h *harness) startFleet(spec fleetSpec) (*fleet, startupResult, error) {
	f := &fleet{name: spec.name}
	h.fleets = append(h.fleets, f)
	host, port := h.c.hostPort()
	for i := 0; i < h.n; i++ {
		n, err := newNode(h.root, spec.name, i)
		if err != nil {
			return nil, startupResult{}, err
		}
		kc := filepath.Join(n.dir, "kubeconfig")
		if err := h.c.cp.WriteKubeconfig(kc, h.c.cp.ConfigForToken(h.tokens[i])); err != nil {
			return nil, startupResult{}, err
		}
		if err := n.own(kc); err != nil {
			return nil, startupResult{}, err
		}
		f.nodes = append(f.nodes, n)
	}
	if err := h.c.createNodes(h.ctx, f.nodes, !spec.seed); err != nil {
		return nil, startupResult{}, err
	}
	podNamespace := "calico-system"
	if spec.seed {
		podNamespace = seedNamespace
	}
	mark := h.c.audit.mark()
	start := time.Now()
	for _, n := range f.nodes {
		env := []string{"PATH=/usr/bin:/bin", "HOME=" + n.dir, "NODE_NAME=" + n.name, "POD_NAMESPACE=" + podNamespace,
			// What the kubelet gives every container: this cluster's API
			// server on loopback, never a fixture's address.
			"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port}
		env = append(env, h.agentEnv...)
		// --rollout=immediate: a ConfigMap change is timed until it is on
		// every node, the burst of an urgent change (annotated immediate);
		// under the default, waves, the last wave would open 40 minutes
		// after it, paced on purpose.
		args := []string{"--kubeconfig", filepath.Join(n.dir, "kubeconfig"), "--cni-net-dir", n.net,
			"--state-dir", filepath.Join(n.dir, "state"), "--backup-dir", filepath.Join(n.dir, "backups"),
			"--status-file", n.statusPath(), "--http-addr", "127.0.0.1:0", "--rollout=immediate"}
		if spec.seed {
			args = append(args, "--namespace", seedNamespace, "--token-source", "secret",
				"--service-account", "calico-node", "--token-policy", "own")
		}
		if err := n.start(h.binary, env, append(args, spec.extra...)); err != nil {
			return nil, startupResult{}, err
		}
	}
	launched := time.Since(start)
	ready, err := h.ready.wait(h.ctx, f.nodes, 5*time.Minute)
	if err != nil {
		return nil, startupResult{}, err
	}
	if f.files, err = newFileWatch(f.nodes); err != nil {
		return nil, startupResult{}, err
	}
	h.c.audit.settle(mark, byAgents, 2*time.Second, 30*time.Second)
	res := startupResult{Agents: h.n, LaunchMs: ms(launched), Ready: spreadOf(sinceEach(start, ready))}
	last := start
	for _, t := range ready {
		last = maxTime(last, t)
	}
	// Each agent's own requests until it was ready; what the nodes' tokens
	// did (token checks) until the last one was.
	own := map[string]int{}
	perAgent := make([]int, h.n)
	f.watches = make([]int, h.n)
	var tokenReqs []request
	for _, r := range h.c.audit.since(mark, byAgents) {
		i := agentIndex(r)
		if i >= 0 && i < h.n && r.Verb == "watch" {
			f.watches[i]++
		}
		switch {
		case i >= 0 && i < h.n && !r.At.After(ready[i]):
			own[r.key()]++
			perAgent[i]++
		case i < 0 && !r.At.After(last):
			tokenReqs = append(tokenReqs, r)
		}
	}
	res.PerAgent = perAgentCounts(own, h.n)
	res.PerAgentMax = maxInt(perAgent)
	res.NodeTokenRequests = counts(tokenReqs)
	return f, res, nil
}

// stopFleet SIGTERMs every agent at once, waits for each, and removes the
// fleet's Nodes and Pods. It reports agents that did not exit cleanly.
func (h *harness) stopFleet(f *fleet) error {
	if f.files != nil {
		f.files.close()
		f.files = nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(f.nodes))
	for i, n := range f.nodes {
		wg.Go(func() { errs[i] = n.stop(20 * time.Second) })
	}
	wg.Wait()
	unclean := 0
	var first error
	for _, err := range errs {
		if err != nil {
			unclean++
			if first == nil {
				first = err
			}
		}
	}
	h.c.deleteNodes(h.ctx, f.nodes)
	if unclean > 0 {
		return fmt.Errorf("%d agents did not exit cleanly on SIGTERM, first: %v", unclean, first)
	}
	return nil
}

// killAll is the cleanup of last resort: every agent still running is
// killed.
func (h *harness) killAll() {
	for _, f := range h.fleets {
		for _, n := range f.nodes {
			if n.cmd != nil && n.cmd.Process != nil {
				_ = n.cmd.Process.Kill()
				_ = n.wait()
				n.cmd = nil
				_ = n.logFile.Close()
			}
		}
		if f.files != nil {
			f.files.close()
		}
	}
}

func perAgentCounts(c map[string]int, n int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range c {
		out[k] = float64(v) / float64(n)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func maxInt(vs []int) int {
	m := 0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}
