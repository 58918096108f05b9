package main

import (
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// role is what a command needs of the reconciler beyond the flags.
type role struct {
	// watch caches the inputs and triggers passes (the agent); nil reads
	// them with requests at each pass.
	watch *inputs.Watch
	// renaming is told of the agent's own renames.
	renaming func(path string) func(renamed bool)
	// settle and settleParsed leave a file a writer is half way through
	// alone (the agent); --once acts at once.
	settle, settleParsed time.Duration
	// parses keeps parsed contents from one pass to the next (the agent).
	parses *cniconf.Parses
	// rewrites counts the rewrites of a chained plugin's copy of Calico's
	// conflist from one pass to the next (the agent).
	rewrites *cniconf.Rewrites
	// checkTokens reports the API server's verdict on the token on disk
	// (the agent, drift); keepFacts refuses to rewrite the node's facts
	// (--once without --accept-env-change).
	checkTokens, keepFacts bool
}

// newReconciler builds the one reconciler a command runs, from the flags
// and the inputs inputs.Select picks. client is nil offline.
func newReconciler(o *Options, cfg *rest.Config, client kubernetes.Interface, as role) (*reconcile.Reconciler, error) {
	src, err := inputs.Select(inputsConfig(o, cfg, client, as.watch))
	if err != nil {
		return nil, err
	}
	r := &reconcile.Reconciler{
		Dir: cniconf.Dir{
			NetDir: o.CNINetDir, BackupDir: o.BackupDir, StateDir: o.StateDir,
			Policy: cniconf.Policy(o.OnDrift), BackupsKept: cniconf.DefaultBackupsKept,
			ChainedTypes: append(slices.Clone(cniconf.DefaultChainedTypes), o.ChainedPluginTypes...),
			MetaTypes:    append(slices.Clone(cniconf.DefaultMetaTypes), o.MetaPluginTypes...),
			Settle:       as.settle, SettleParsed: as.settleParsed, Renaming: as.renaming, Parses: as.parses, Rewrites: as.rewrites,
		},
		NodeName: o.NodeName, KubeconfigName: o.CNIKubeconfigName, TokenSourceName: o.TokenSource,
		ServiceAccount: o.ServiceAccount, Policy: o.TokenPolicy,
		Install: src.Install, Fresh: src.Fresh, Token: src.Token,
		CheckTokens: as.checkTokens, KeepFacts: as.keepFacts,
	}
	if o.given("cni-conf-name") {
		r.ConfName = o.CNIConfName // a flag wins over install-cni's CNI_CONF_NAME
	}
	if o.CAFile != "" {
		if _, err := readCAFile(o.CAFile); err != nil {
			return nil, err // checked before anything is written
		}
		r.CA = func() ([]byte, error) { return readCAFile(o.CAFile) }
		r.CAOrigin = "--ca-file " + o.CAFile
	} else if cfg != nil {
		r.CA = func() ([]byte, error) { return apiCA(cfg), nil }
		r.CAOrigin = "the agent's own API CA"
		if cfg.CAFile != "" {
			r.CAOrigin += " (" + cfg.CAFile + ")"
		}
	}
	if src.Check != nil {
		r.Verdicts = &token.VerdictCache{Period: o.TokenCheckPeriod, Check: src.Check}
		if o.CredentialProbe {
			// The token on disk is judged by Calico's own first
			// request with the credential that holds it.
			r.Probe = &probe.Prober{}
			r.CAChecks = &reconcile.CAChecks{}
			// Every credential the CNI directory's configs point to,
			// reported, never written.
			r.Credentials = &reconcile.Credentials{Period: o.TokenCheckPeriod}
		}
	}
	return r, nil
}

// inputsConfig is what the flags say about the inputs.
func inputsConfig(o *Options, cfg *rest.Config, client kubernetes.Interface, watch *inputs.Watch) inputs.Config {
	return inputs.Config{
		Source: o.Source, ConfigMapNamed: o.configMapSourceNamed(), DaemonSet: o.CalicoDaemonSet,
		Namespace: o.Namespace, ConfigMap: o.ConfigMap, ConfigMapKey: o.ConfigMapKey, TemplateFile: o.CNINetworkConfigFile,
		ManifestFile: o.ManifestFile, ConfigMapFile: o.ConfigMapFile, NodeName: o.NodeName,
		TokenSource: o.TokenSource, TokenFile: o.TokenFile, TokenSecret: o.TokenSecret, TokenTTL: o.TokenTTL,
		Client: client, REST: cfg, Watch: watch, Recheck: o.ResyncPeriod,
	}
}
