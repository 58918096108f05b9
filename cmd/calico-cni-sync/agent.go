package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/sync"
)

// wedgedAfter is how long one reconcile may take before /healthz fails.
const wedgedAfter = 2 * time.Minute

// settle is how long a just-changed corrupt file is left for its writer to
// finish before the agent replaces it.
const settle = time.Second

// runAgent runs the node agent until SIGTERM or SIGINT.
func runAgent(ctx context.Context, o *Options, logger *slog.Logger, stderr io.Writer) int {
	cfg, client, err := clientFor(o)
	if err == nil && client == nil {
		cfg, err = restConfig(o) // the agent reports to the cluster even with file inputs
		if err == nil {
			client, err = newClient(cfg)
		}
	}
	if err != nil {
		logger.Error("cannot reach the API server", "err", err)
		return exitError
	}
	r, err := newReconciler(o, cfg, client)
	if err != nil {
		logger.Error("bad flags", "err", err)
		return exitError
	}
	r.Dir.Settle = settle
	metrics := sync.NewMetrics()
	health := &sync.Health{WedgedAfter: wedgedAfter, ResyncPeriod: o.ResyncPeriod}
	events, err := newClient(rest.CopyConfig(cfg))
	if err != nil {
		logger.Error("cannot reach the API server", "err", err)
		return exitError
	}
	reporter, stopEvents := sync.NewReporter(client, events, o.NodeName, o.StatusFile, tokenAdvice(o), logger)
	defer stopEvents()
	agent := &sync.Agent{
		Reconciler: r, Client: client, Config: cfg, Namespace: o.Namespace, ConfigMap: o.ConfigMap,
		ServiceAccount: o.ServiceAccount, TokenSecret: o.TokenSecret, TokenSource: o.TokenSource, TokenFile: o.TokenFile,
		ResyncPeriod: o.ResyncPeriod, TokenCheckPeriod: o.TokenCheckPeriod,
		Reporter: reporter, Metrics: metrics, Health: health, Logger: logger,
	}
	if o.ConfigMapFile != "" || o.CNINetworkConfigFile != "" {
		agent.ConfigMapOverride = r.ConfigMap
	}
	health.Extra = agent.TokenExpired
	addr, err := sync.Serve(ctx, o.HTTPAddr, metrics, health, logger)
	if err != nil {
		logger.Error("cannot serve health and metrics", "err", err)
		return exitError
	}
	logger.Info("starting", "version", version, "node", o.NodeName, "tokenSource", o.TokenSource, "http", addr.String())
	if err := agent.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return exitError
	}
	return exitOK
}

// tokenAdvice says what to do about a rejected token, per source.
func tokenAdvice(o *Options) string {
	switch o.TokenSource {
	case sync.SourceTokenRequest:
		return "the agent requests a new token from the TokenRequest API"
	case sync.SourceFile:
		return "the token file " + o.TokenFile + " holds a token the API server no longer accepts; check what projects or writes it"
	default:
		if o.TokenSecret != "" {
			return "delete the token Secret " + o.Namespace + "/" + o.TokenSecret + " so the token controller issues a new one, or unpin --token-secret"
		}
		return "delete the service account's token Secret in " + o.Namespace + " so the token controller issues a new one"
	}
}
