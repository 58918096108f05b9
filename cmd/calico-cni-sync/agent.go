package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/agent"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// wedgedAfter is how long one reconcile may take before /healthz fails.
const wedgedAfter = 2 * time.Minute

// settle is how long a just-changed corrupt file is left for its writer to
// finish before the agent replaces it.
const settle = time.Second

// settleParsed is how long a file that parses is left alone after a change
// before its token is judged: calico-node writes calico-kubeconfig with a
// plain truncate-and-write.
const settleParsed = 100 * time.Millisecond

// runAgent runs the node agent until SIGTERM or SIGINT: the wiring of its
// parts, each built once. Nothing here asks the API server: an agent whose
// API server is away starts, and its passes report the error.
// Startup errors are logged, not printed: the agent's stderr is its log,
// in --log-format.
func runAgent(ctx context.Context, o *Options, logger *slog.Logger) int {
	cfg, client, err := clientFor(o)
	if err == nil && client == nil {
		cfg, err = restConfig(o) // the agent reports to the cluster even with file inputs
		if err == nil {
			client, err = newClient(cfg)
		}
	}
	if err != nil {
		logger.Error("no API server to report to", "err", err)
		return exitError
	}
	events, err := newClient(rest.CopyConfig(cfg))
	if err == nil {
		err = checkNetDirParent(o.CNINetDir)
	}
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	// A directory the agent cannot write is its own fault, and it may be
	// passing (a read-only remount): the agent runs, says so, and /readyz
	// fails until it can write again, so a rollout that broke a mount
	// stops at the first node.
	if err := checkWritableDirs(o, true); err != nil {
		logger.Error("not ready: a directory of the agent's is not writable", "err", err)
	}
	queue := agent.NewQueue(logger)
	watch := inputs.NewWatch(client, queue.Trigger)
	defer watch.Stop()
	own := &agent.OwnWrites{}
	r, err := newReconciler(o, cfg, client, role{watch: watch, renaming: own.Renaming,
		settle: settle, settleParsed: settleParsed, parses: cniconf.NewParses(), rewrites: cniconf.NewRewrites(), checkTokens: true}) // the agent reports and acts on the API server's verdict
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	mode, plan, err := o.rolloutPlan()
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	// The peers' Leases are watched from the first change rolled out in
	// waves (the flag, or a ConfigMap's annotation), not before.
	peers := &rollout.Peers{Client: client, Namespace: o.LeaseNamespace, Self: o.NodeName, Trigger: queue.Trigger}
	defer peers.Stop()
	r.Rollout = &rollout.Gate{Mode: mode, Plan: plan, Node: o.NodeName, Peers: peers,
		NodeLabels: func(ctx context.Context) (map[string]string, error) {
			ctx, cancel := context.WithTimeout(ctx, inputs.APITimeout)
			defer cancel()
			n, err := client.CoreV1().Nodes().Get(ctx, o.NodeName, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return n.Labels, nil
		}}
	// What a revision applied in waves replaced is kept, and put back
	// when a pod's sandbox fails on the node during its soak.
	r.Rollbacks = &reconcile.Rollbacks{}
	metrics := status.NewMetrics()
	reporter, stopEvents := status.NewReporter(client, events, o.NodeName, o.StatusFile, tokenAdvice(o), logger)
	defer stopEvents()
	reporter.Probed = r.Probe != nil
	publisher := status.NewPublisher(reporter,
		&status.Liveness{Client: client, Namespace: o.LeaseNamespace, Node: o.NodeName, Period: o.ResyncPeriod}, logger)
	managed := append(inputs.ConfNames(), o.CNIKubeconfigName)
	if r.ConfName != "" {
		managed = append(managed, r.ConfName)
	}
	tokenFile := ""
	if o.TokenSource == token.SourceFile {
		tokenFile = o.TokenFile
	}
	health := &status.Health{WedgedAfter: wedgedAfter, ResyncPeriod: o.ResyncPeriod}
	a := agent.NewAgent(agent.Config{NetDir: o.CNINetDir, Managed: managed, TokenFile: tokenFile,
		ResyncPeriod: o.ResyncPeriod, TokenCheckPeriod: o.TokenCheckPeriod,
		Describe: []any{"node", o.NodeName, "dir", o.CNINetDir, "source", o.Source, "rollout", o.Rollout},
		Sandbox: func(onFailure func(sandbox.Failure)) *sandbox.Source {
			return sandbox.New(client, o.NodeName, onFailure)
		}},
		queue, own, r, publisher, metrics, health, logger)
	health.Extra = func() error { return errors.Join(a.NetDirGone(), a.TokenExpired()) }
	health.Faults = func() error { return errors.Join(checkWritableDirs(o, true), a.OwnFault()) }
	if o.ProbeOnSandboxFailure && r.Verdicts != nil {
		// A pod's sandbox that fails on this node is a reason to probe
		// the CNI credential now, not at the next token check.
		failures := sandbox.New(client, o.NodeName, a.SandboxFailed)
		var wg sync.WaitGroup
		defer wg.Wait()
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Go(func() { _ = failures.Run(wctx) })
	}
	addr, err := status.Serve(ctx, o.HTTPAddr, metrics, health, logger)
	if err != nil {
		logger.Error("cannot serve health and metrics", "err", err)
		return exitError
	}
	logger.Info("starting", "version", buildVersion(version, readBuildInfo()), "node", o.NodeName, "tokenSource", o.TokenSource, "http", addr.String())
	if err := a.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return exitError
	}
	return exitOK
}

// tokenAdvice says what to do about a rejected token, per source.
func tokenAdvice(o *Options) string {
	const secret = "delete the service account's token Secret so the token controller issues a new one (the agent follows it)"
	switch o.TokenSource {
	case token.SourceTokenRequest:
		return "the agent requests a new token from the TokenRequest API"
	case token.SourceFile:
		return "the token file " + o.TokenFile + " holds a token the API server no longer accepts; check what projects or writes it"
	case token.SourceSecret:
		if o.TokenSecret != "" {
			return "delete the token Secret " + o.TokenSecret + " so the token controller issues a new one, or unpin --token-secret"
		}
		return secret
	default:
		return "a TokenRequest token is renewed by the agent; for a legacy token Secret, " + secret
	}
}
