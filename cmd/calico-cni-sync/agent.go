package main

import (
	"context"
	"errors"
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

// settleParsed is how long a file that parses is left alone after a change
// before its token is judged: calico-node writes calico-kubeconfig with a
// plain truncate-and-write.
const settleParsed = 100 * time.Millisecond

// runAgent runs the node agent until SIGTERM or SIGINT.
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
	r, err := newReconciler(ctx, o, cfg, client)
	if err == nil {
		err = checkWritableDirs(o, true)
	}
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	r.Dir.Settle, r.Dir.SettleParsed = settle, settleParsed
	r.CheckTokens = true // the agent reports and acts on the API server's verdict
	metrics := sync.NewMetrics()
	health := &sync.Health{WedgedAfter: wedgedAfter, ResyncPeriod: o.ResyncPeriod}
	events, err := newClient(rest.CopyConfig(cfg))
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	reporter, stopEvents := sync.NewReporter(client, events, o.NodeName, o.StatusFile, tokenAdvice(o), logger)
	defer stopEvents()
	agent := &sync.Agent{
		Reconciler: r, Client: client, Config: cfg, DaemonSet: o.CalicoDaemonSet,
		Namespace: o.Namespace, ConfigMap: o.ConfigMap, ConfigMapKey: o.ConfigMapKey, TemplateFile: o.CNINetworkConfigFile,
		TokenSecret: o.TokenSecret, TokenSource: o.TokenSource, TokenFile: o.TokenFile, TokenTTL: o.TokenTTL,
		ResyncPeriod: o.ResyncPeriod, TokenCheckPeriod: o.TokenCheckPeriod,
		Reporter: reporter, Metrics: metrics, Health: health, Logger: logger,
		Liveness: &sync.Liveness{Client: client, Namespace: sync.LeaseNamespace(), Node: o.NodeName, Period: o.ResyncPeriod},
	}
	if o.hasInputFile() {
		agent.InstallOverride = r.Install
	} else if agent.Source, err = chooseSource(ctx, o, sync.APICluster{Client: client}); err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	health.Extra = func() error { return errors.Join(agent.NetDirGone(), agent.TokenExpired()) }
	addr, err := sync.Serve(ctx, o.HTTPAddr, metrics, health, logger)
	if err != nil {
		logger.Error("cannot serve health and metrics", "err", err)
		return exitError
	}
	logger.Info("starting", "version", buildVersion(version, readBuildInfo()), "node", o.NodeName, "tokenSource", o.TokenSource, "http", addr.String())
	if err := agent.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return exitError
	}
	return exitOK
}

// tokenAdvice says what to do about a rejected token, per source.
func tokenAdvice(o *Options) string {
	const secret = "delete the service account's token Secret so the token controller issues a new one (the agent follows it)"
	switch o.TokenSource {
	case sync.SourceTokenRequest:
		return "the agent requests a new token from the TokenRequest API"
	case sync.SourceFile:
		return "the token file " + o.TokenFile + " holds a token the API server no longer accepts; check what projects or writes it"
	case sync.SourceSecret:
		if o.TokenSecret != "" {
			return "delete the token Secret " + o.TokenSecret + " so the token controller issues a new one, or unpin --token-secret"
		}
		return secret
	default:
		return "a TokenRequest token is renewed by the agent; for a legacy token Secret, " + secret
	}
}
