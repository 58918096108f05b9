package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// newReconciler wires the inputs the flags name. client is nil offline.
func newReconciler(ctx context.Context, o *Options, cfg *rest.Config, client kubernetes.Interface) (*sync.Reconciler, error) {
	r := &sync.Reconciler{
		Dir: cniconf.Dir{
			NetDir: o.CNINetDir, BackupDir: o.BackupDir, StateDir: o.StateDir,
			Policy: cniconf.Policy(o.OnDrift), BackupsKept: cniconf.DefaultBackupsKept,
			ChainedTypes: append(slices.Clone(cniconf.DefaultChainedTypes), o.ChainedPluginTypes...),
			MetaTypes:    append(slices.Clone(cniconf.DefaultMetaTypes), o.MetaPluginTypes...),
		},
		NodeName: o.NodeName, KubeconfigName: o.CNIKubeconfigName, TokenSourceName: o.TokenSource,
		ServiceAccount: o.ServiceAccount, Policy: o.TokenPolicy,
	}
	if o.given("cni-conf-name") {
		r.ConfName = o.CNIConfName // a flag wins over install-cni's CNI_CONF_NAME
	}
	if o.CAFile != "" {
		if _, err := readCAFile(o.CAFile); err != nil {
			return nil, err // checked before anything is written
		}
		r.CA = func() ([]byte, error) { return readCAFile(o.CAFile) }
	} else if cfg != nil {
		r.CA = func() ([]byte, error) { return apiCA(cfg), nil }
	}
	install, err := installSource(ctx, o, client)
	if err != nil {
		return nil, err
	}
	r.Install = install
	switch o.TokenSource {
	case sync.SourceFile:
		r.Token = sync.TokenFromFile(o.TokenFile)
	case sync.SourceTokenRequest:
		r.Token = sync.NewTokenRequester(client, o.TokenTTL, nil)
	case sync.SourceSecret:
		r.Token = sync.SecretTokenFromAPI(client, o.TokenSecret)
	default:
		r.Token = sync.AutoToken{Secret: sync.SecretTokenFromAPI(client, o.TokenSecret), Request: sync.NewTokenRequester(client, o.TokenTTL, nil)}
	}
	if cfg != nil {
		r.Verdicts = &sync.VerdictCache{Period: o.TokenCheckPeriod,
			Check: func(ctx context.Context, token string) *bool { return sync.TokenAccepted(ctx, cfg, token) }}
	}
	return r, nil
}

// installSource is where the inputs come from: a manifest or ConfigMap file,
// or the API (the DaemonSet, else the ConfigMap).
func installSource(ctx context.Context, o *Options, client kubernetes.Interface) (sync.InstallSource, error) {
	var accounts installcni.Lookup
	if client != nil {
		accounts = sync.APICluster{Client: client}
	}
	configMap := func(cm sync.ConfigMapSource, file string) sync.InstallSource {
		return sync.InstallFromConfigMap(cm, o.ConfigMapKey, o.CNINetworkConfigFile, os.LookupEnv, accounts,
			sync.SourceInfo{Kind: sync.SourceConfigMap, File: file})
	}
	switch {
	case o.ManifestFile != "":
		data, err := os.ReadFile(o.ManifestFile)
		if err != nil {
			return nil, fmt.Errorf("read --manifest-file: %w", err)
		}
		m, err := installcni.ParseManifest(data)
		if err != nil {
			return nil, fmt.Errorf("--manifest-file %s: %w", o.ManifestFile, err)
		}
		return sync.InstallFromDaemonSet(sync.ManifestCluster{Manifest: m}, o.CalicoDaemonSet, o.NodeName, os.LookupEnv, o.ManifestFile), nil
	case o.ConfigMapFile != "":
		return configMap(sync.ConfigMapFromFile(o.ConfigMapFile), o.ConfigMapFile), nil
	case client == nil:
		// The template alone (--cni-network-config-file): the MTU and
		// etcd endpoints come from the environment.
		return configMap(sync.EmptyConfigMap, o.CNINetworkConfigFile), nil
	}
	source, err := chooseSource(ctx, o, sync.APICluster{Client: client})
	if err != nil {
		return nil, err
	}
	if source == sync.SourceDaemonSet {
		return sync.InstallFromDaemonSet(sync.APICluster{Client: client}, o.CalicoDaemonSet, o.NodeName, os.LookupEnv, ""), nil
	}
	return configMap(sync.ConfigMapFromAPI(client, o.Namespace, o.ConfigMap), ""), nil
}

// chooseSource decides --source=auto: configmap when a flag only that source
// reads is given; else daemonset when a candidate DaemonSet exists; else
// configmap. A read the API server refuses is an error, never a fallback.
func chooseSource(ctx context.Context, o *Options, c sync.Cluster) (string, error) {
	if o.Source != sync.SourceAuto {
		return o.Source, nil
	}
	if o.configMapSourceNamed() {
		return sync.SourceConfigMap, nil
	}
	ds, err := sync.FindDaemonSet(ctx, c, o.CalicoDaemonSet)
	if err != nil {
		return "", fmt.Errorf("--source=auto: %w", err)
	}
	if ds != nil {
		return sync.SourceDaemonSet, nil
	}
	return sync.SourceConfigMap, nil
}
