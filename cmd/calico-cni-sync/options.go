package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Options are the command line of every mode. The flags are common to the
// agent, --once, drift, report and render (the contract lists them so): one
// command line, such as the DaemonSet's, works for each of them, and a
// combination that cannot mean anything is refused by Validate.
type Options struct {
	// Command is the subcommand being run: "" for the agent and --once.
	Command string

	// Kubeconfig is the agent's own kubeconfig; else kubectl's rules:
	// $KUBECONFIG, ~/.kube/config, in-cluster.
	Kubeconfig string
	// Context is the kubeconfig context to use, as kubectl's --context;
	// empty: the current context.
	Context string
	// LogFormat is text or json.
	LogFormat string
	// Verbosity is the log level: 0 info, 1+ debug, and client-go's own -v.
	Verbosity int

	// Source is where the inputs come from: auto, daemonset or configmap.
	Source string
	// CalicoDaemonSet names calico-node's DaemonSet (NAMESPACE/NAME); empty
	// looks for the candidates.
	CalicoDaemonSet string
	// ManifestFile reads the DaemonSet and its ConfigMaps from a manifest
	// (offline).
	ManifestFile string
	// Namespace holds calico-config (source configmap).
	Namespace string
	// ConfigMap is the name of the calico-config ConfigMap.
	ConfigMap string
	// ConfigMapKey is the template's key in the ConfigMap.
	ConfigMapKey string
	// TokenPolicy decides when the token in the files is current: auto,
	// own or guard.
	TokenPolicy string
	// NodeName is this node; else KUBERNETES_NODE_NAME, NODE_NAME, the hostname.
	NodeName string
	// TokenSource is auto, secret, tokenrequest or file.
	TokenSource string
	// ServiceAccount whose token the CNI plugin uses; empty: as install-cni
	// and calico-node decide it.
	ServiceAccount string
	// TokenSecret pins one token Secret instead of following the newest.
	TokenSecret string
	// TokenFile is the token file for the file source.
	TokenFile string
	// TokenTTL is the lifetime asked of the TokenRequest API.
	TokenTTL time.Duration
	// ConfigMapFile reads the ConfigMap from a manifest instead of the API.
	ConfigMapFile string
	// CNINetworkConfigFile replaces the template, as install-cni's CNI_NETWORK_CONFIG_FILE.
	CNINetworkConfigFile string
	// CAFile is the kubeconfig's CA when the token Secret has no ca.crt.
	CAFile string
	// CNINetDir is the CNI configuration directory.
	CNINetDir string
	// CNIConfName names the conf file; empty follows the content.
	CNIConfName string
	// CNIKubeconfigName names the kubeconfig written beside the conf.
	CNIKubeconfigName string
	// OnDrift is the policy for hand edits: report or enforce.
	OnDrift string
	// BackupDir keeps replaced hand edits and corrupt files.
	BackupDir string
	// StateDir keeps the token-free record of what was written.
	StateDir string

	// StatusFile receives the node's report; empty disables it.
	StatusFile string
	// ResyncPeriod is the agent's safety-net full reconcile.
	ResyncPeriod time.Duration
	// LeaseNamespace holds the agents' Leases: where the agent renews its
	// own and report reads them.
	LeaseNamespace string
	// TokenCheckPeriod is how often the token on disk is checked against the API server.
	TokenCheckPeriod time.Duration
	// CredentialProbe judges the token on disk by Calico's plugin's own
	// first request with the file's server, CA and token, and publishes
	// the CalicoCNICredentialHealthy condition; false: by a review with
	// the agent's own server and CA, and that condition is Unknown.
	CredentialProbe bool
	// ProbeOnSandboxFailure watches the kubelet's FailedCreatePodSandBox
	// events and probes the CNI credential at once when one is for a pod
	// on this node. Off by default: the watch costs the API server per
	// event written in the cluster, per node (docs/BENCHMARKS.md).
	ProbeOnSandboxFailure bool
	// Rollout is how the agent rolls out a ConfigMap-borne change:
	// waves (the default: nothing reaches every node at once without a
	// way to stop it) or immediate; the ConfigMap annotation overrides it
	// per change.
	Rollout string
	// RolloutCanarySelector picks the canary nodes by label; empty:
	// RolloutCanaryPercent of the nodes, by a hash of their names.
	RolloutCanarySelector string
	RolloutCanaryPercent  int
	// RolloutWaves is how many waves follow the canaries, and
	// RolloutWaveInterval the time between them.
	RolloutWaves        int
	RolloutWaveInterval time.Duration
	// HTTPAddr serves /metrics, /healthz and /readyz.
	HTTPAddr string
	// Once reconciles this node once and exits.
	Once bool
	// DryRun, with --once, prints a diff and writes nothing.
	DryRun bool
	// AcceptEnvChange lets --once change a value the last write took from
	// the node's environment (node name, API address, MTU).
	AcceptEnvChange bool

	// Output is text or json for --once, drift, report and render.
	Output string
	// ShowToken makes render print the token instead of its hash.
	ShowToken bool
	// Selector selects the nodes report judges: the agent's DaemonSet's.
	Selector string
	// Suggest makes drift say, for each Drifted file, where the lasting
	// change must be made.
	Suggest bool
	// Stuck makes report list the pods the stale-token story leaves stuck;
	// Fix deletes the controller-owned ones, after Yes or a yes at a prompt.
	Stuck bool
	Fix   bool
	Yes   bool
	// Rollout makes report show the staged rollout of ConfigMap-borne
	// changes, per revision and per node, from the agents' Leases.
	RolloutReport bool
	// PlanFile is plan's -f: the ConfigMap manifest whose effect plan shows
	// ("-" is stdin).
	PlanFile string
	// CleanupAll makes cleanup remove the agent's Lease and condition of
	// every node, rather than of --node-name's.
	CleanupAll bool
	// ChainedPluginTypes and MetaPluginTypes add to the plugin types that
	// other node agents chain into Calico's list (istio-cni, linkerd-cni)
	// and that delegate to Calico from a config sorting first (multus).
	ChainedPluginTypes []string
	MetaPluginTypes    []string

	// changed records the flags given on the command line.
	changed func(name string) bool
	// nodeNameFrom says where NodeName came from when no flag or variable
	// gave it: "hostname" or "record" (the CNI directory's record).
	nodeNameFrom string
}

// NewOptions returns the defaults, with the environment install-cni reads.
func NewOptions() *Options {
	return &Options{
		Source:               inputs.SourceAuto,
		Namespace:            "kube-system",
		ConfigMap:            "calico-config",
		ConfigMapKey:         inputs.KeyTemplate,
		TokenSource:          token.SourceAuto,
		TokenPolicy:          token.PolicyAuto,
		CNINetDir:            envOr("CNI_NET_DIR", "/etc/cni/net.d"),
		CNIKubeconfigName:    cniconf.DefaultKubeconfigName,
		OnDrift:              string(cniconf.PolicyReport),
		BackupDir:            "/var/lib/calico-cni-sync/backups",
		StateDir:             "/var/lib/calico-cni-sync/state",
		StatusFile:           "/run/calico-cni-sync/status.json",
		ResyncPeriod:         5 * time.Minute,
		LeaseNamespace:       status.LeaseNamespace(),
		TokenTTL:             24 * time.Hour,
		TokenCheckPeriod:     10 * time.Minute,
		CredentialProbe:      true,
		HTTPAddr:             ":9645",
		Rollout:              string(rollout.Waves),
		RolloutCanaryPercent: rollout.DefaultCanaryPercent,
		RolloutWaves:         rollout.DefaultWaves,
		RolloutWaveInterval:  rollout.DefaultWaveInterval,
		LogFormat:            "text",
		Output:               "text",
		Selector:             "kubernetes.io/os=linux",
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// AddFlags registers every common flag.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the tool itself (default $KUBECONFIG, else ~/.kube/config, else in-cluster)")
	fs.StringVar(&o.Context, "context", o.Context, "the kubeconfig context to use, as kubectl's (default the current context)")
	fs.StringVar(&o.Source, "source", o.Source, "where the inputs come from: auto, daemonset (calico-node's DaemonSet, as install-cni gets them) or configmap")
	fs.StringVar(&o.CalicoDaemonSet, "calico-daemonset", o.CalicoDaemonSet, "calico-node's DaemonSet as NAMESPACE/NAME (default: the first of "+inputs.CandidateList()+")")
	fs.StringVar(&o.ManifestFile, "manifest-file", o.ManifestFile, "read the DaemonSet and its ConfigMaps from this manifest (calico.yaml, or kubectl get -o yaml output) instead of the API")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the ConfigMap (source configmap)")
	fs.StringVar(&o.ConfigMap, "configmap", o.ConfigMap, "name of Calico's ConfigMap (source configmap)")
	fs.StringVar(&o.ConfigMapKey, "configmap-key", o.ConfigMapKey, "the template's key in the ConfigMap (config for the operator's calico-system/cni-config)")
	fs.StringVar(&o.TokenPolicy, "token-policy", o.TokenPolicy, "when the token in the files is current: own (only the source's), guard (any healthy token) or auto")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name (default $KUBERNETES_NODE_NAME, $NODE_NAME, the hostname)")
	fs.StringVar(&o.TokenSource, "token-source", o.TokenSource, "where a token comes from: auto, secret, tokenrequest or file (file when --token-file is given)")
	fs.StringVar(&o.ServiceAccount, "service-account", o.ServiceAccount, "service account whose token the CNI plugin uses (default: as install-cni decides it)")
	fs.StringVar(&o.TokenSecret, "token-secret", o.TokenSecret, "pin one token Secret by name instead of following the newest (--token-source=secret)")
	fs.StringVar(&o.TokenFile, "token-file", o.TokenFile, "token file (implies --token-source=file)")
	fs.StringVar(&o.ConfigMapFile, "configmap-file", o.ConfigMapFile, "read the ConfigMap from this manifest (YAML or JSON) instead of the API")
	fs.StringVar(&o.CNINetworkConfigFile, "cni-network-config-file", o.CNINetworkConfigFile, "read the cni_network_config template from this file")
	fs.StringVar(&o.CAFile, "ca-file", o.CAFile, "PEM CA for the kubeconfig when the token Secret has no ca.crt")
	fs.StringVar(&o.CNINetDir, "cni-net-dir", o.CNINetDir, "CNI configuration directory (env CNI_NET_DIR)")
	fs.StringVar(&o.CNIConfName, "cni-conf-name", o.CNIConfName, "conf file name (env CNI_CONF_NAME; default by content: 10-calico.conflist or 10-calico.conf)")
	fs.StringVar(&o.CNIKubeconfigName, "cni-kubeconfig-name", o.CNIKubeconfigName, "kubeconfig file name in the CNI directory")
	fs.StringVar(&o.OnDrift, "on-drift", o.OnDrift, "what to do with a hand-edited file: report (keep it) or enforce (back up and restore)")
	fs.StringVar(&o.BackupDir, "backup-dir", o.BackupDir, "where replaced hand edits and corrupt files are kept")
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "where the token-free record of written files is kept")
	fs.StringVar(&o.StatusFile, "status-file", o.StatusFile, "status file of the agent (empty disables)")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "full reconcile period of the agent")
	fs.StringVar(&o.LeaseNamespace, "lease-namespace", o.LeaseNamespace, "namespace of the agents' Leases, where the agent renews its own and report reads them (env POD_NAMESPACE)")
	fs.DurationVar(&o.TokenTTL, "token-ttl", o.TokenTTL, "lifetime of TokenRequest tokens")
	fs.DurationVar(&o.TokenCheckPeriod, "token-check-period", o.TokenCheckPeriod, "how often the token on disk is checked against the API server")
	fs.BoolVar(&o.ProbeOnSandboxFailure, "probe-on-sandbox-failure", o.ProbeOnSandboxFailure, "watch the kubelet's FailedCreatePodSandBox events and, when one is for a pod on this node, probe the CNI credential at once (at most every 30s); needs --credential-probe, and list/watch of Events (the manifests grant it; manifests/components/sandbox-probe adds the flag). Each agent's watch costs the API server per event written in the cluster: see docs/BENCHMARKS.md before turning it on in a large cluster")
	fs.BoolVar(&o.CredentialProbe, "credential-probe", o.CredentialProbe, "judge the token on disk by the CNI plugin's own first request with the server, CA and token of its file (that server only), replace a CA that does not verify the server with the agent's when that one does, report every CNI credential and the CalicoCNICredentialHealthy condition (false: by a review with the agent's own server and CA; the condition is Unknown)")
	fs.StringVar(&o.Rollout, "rollout", o.Rollout, "how a ConfigMap change reaches the nodes: waves (the canaries first, then --rollout-waves waves --rollout-wave-interval apart, halted when a node of an earlier wave rolls back: a change takes up to --rollout-waves x --rollout-wave-interval to reach every node) or immediate (every node at once); the ConfigMap annotation "+rollout.Annotation+"=immediate|waves|paused overrides it per change (immediate for an urgent one)")
	fs.StringVar(&o.RolloutCanarySelector, "rollout-canary-selector", o.RolloutCanarySelector, "with waves: the canary nodes, as a Node label selector (default: --rollout-canary-percent of the nodes, picked by a hash of their names)")
	fs.IntVar(&o.RolloutCanaryPercent, "rollout-canary-percent", o.RolloutCanaryPercent, "with waves and no --rollout-canary-selector: the percentage of nodes that are canaries, picked by a stable hash of their names (on a small cluster it may pick none, and wave 1 is the first: name canaries with --rollout-canary-selector)")
	fs.IntVar(&o.RolloutWaves, "rollout-waves", o.RolloutWaves, "with waves: how many waves follow the canaries (the other nodes, split by the same hash)")
	fs.DurationVar(&o.RolloutWaveInterval, "rollout-wave-interval", o.RolloutWaveInterval, "with waves: the time between waves; wave k may apply a change k intervals after the ConfigMap's update")
	fs.StringVar(&o.HTTPAddr, "http-addr", o.HTTPAddr, "address for /metrics, /healthz and /readyz")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text or json")
	fs.IntVarP(&o.Verbosity, "v", "v", o.Verbosity, "log verbosity (also client-go's)")
	fs.StringVarP(&o.Output, "output", "o", o.Output, "output of --once, drift, report and render: text or json")
	fs.StringSliceVar(&o.ChainedPluginTypes, "chained-plugin-types", o.ChainedPluginTypes, "more plugin types that other agents chain into Calico's list, kept and not taken for hand edits (istio-cni and linkerd-cni always are)")
	fs.StringSliceVar(&o.MetaPluginTypes, "meta-plugin-types", o.MetaPluginTypes, "more plugin types whose config, sorting first, delegates to Calico and does not shadow it (multus and multus-shim always do)")
	fs.StringVarP(&o.Selector, "selector", "l", o.Selector, "report: the nodes to judge, as a label selector (those the agent's DaemonSet runs on)")
	fs.BoolVar(&o.Once, "once", o.Once, "reconcile this node once and exit")
	fs.BoolVar(&o.DryRun, "dry-run", o.DryRun, "with --once: print a unified diff, write nothing")
	fs.BoolVar(&o.AcceptEnvChange, "accept-env-change", o.AcceptEnvChange, "with --once: allow changing the node name, API address or MTU the last write took from the node's environment")
}

// Complete fills what depends on other flags and the environment.
func (o *Options) Complete(fs *pflag.FlagSet) error {
	o.changed = fs.Changed
	if o.TokenFile != "" && !fs.Changed("token-source") {
		o.TokenSource = token.SourceFile
	}
	if o.TokenSecret != "" && o.TokenFile == "" && !fs.Changed("token-source") {
		o.TokenSource = token.SourceSecret
	}
	if o.NodeName == "" {
		o.NodeName = os.Getenv("KUBERNETES_NODE_NAME")
	}
	if o.NodeName == "" {
		o.NodeName = os.Getenv("NODE_NAME")
	}
	// The kubeconfig path is written into the conf, where the CNI plugin
	// reads it from the runtime's working directory, not ours: every path
	// must be absolute.
	for _, p := range []*string{&o.CNINetDir, &o.StateDir, &o.BackupDir, &o.StatusFile, &o.ManifestFile, &o.ConfigMapFile} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("make %s absolute: %w", *p, err)
		}
		*p = abs
	}
	if o.NodeName == "" {
		// A repair on the node itself, from a shell without the agent's
		// environment: the node's name is the one its files were written
		// for.
		o.NodeName = cniconf.RecordedFacts(o.StateDir, o.CNINetDir)[cniconf.FactNodeName]
		if o.NodeName != "" {
			o.nodeNameFrom = "record"
		}
	}
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
		if o.NodeName != "" {
			o.nodeNameFrom = "hostname"
		}
	}
	return nil
}

// onlyFor names the flags of the common set that only some commands take:
// a command's help lists only the flags it accepts, and any other is an
// unknown flag. The mode flags are the agent's (--once is how it runs once).
var onlyFor = map[string]string{"once": "", "dry-run": "", "accept-env-change": "",
	"rollout": "", "rollout-canary-selector": "", "rollout-canary-percent": "", "rollout-waves": "", "rollout-wave-interval": ""}

// addFlagsFor registers the common flags the command takes.
func (o *Options) addFlagsFor(command string, fs *pflag.FlagSet) {
	all := pflag.NewFlagSet(command, pflag.ContinueOnError)
	o.AddFlags(all)
	all.VisitAll(func(f *pflag.Flag) {
		if only, ok := onlyFor[f.Name]; !ok || only == command {
			fs.AddFlag(f)
		}
	})
}

// nodeNameNote is the line --once prints on stderr when the node's name
// came from neither a flag nor the environment, so that a repair run from
// a shell says which node it repaired.
func (o *Options) nodeNameNote() string {
	switch o.nodeNameFrom {
	case "hostname":
		return fmt.Sprintf("node name %q from the hostname (no --node-name, $KUBERNETES_NODE_NAME or $NODE_NAME)", o.NodeName)
	case "record":
		return fmt.Sprintf("node name %q from the record of the last write in %s (no --node-name, $KUBERNETES_NODE_NAME or $NODE_NAME)", o.NodeName, o.StateDir)
	}
	return ""
}

// offline reports whether the command has every input it needs without an
// API server.
func (o *Options) offline() bool {
	return o.hasInputFile() && o.TokenSource == token.SourceFile
}

// hasInputFile reports whether the inputs are read from a file rather than
// the API.
func (o *Options) hasInputFile() bool {
	return o.ManifestFile != "" || o.ConfigMapFile != "" || o.CNINetworkConfigFile != ""
}

// given reports whether a flag was given on the command line.
func (o *Options) given(name string) bool {
	return o.changed != nil && o.changed(name)
}

// configMapSourceNamed reports whether a flag that only source configmap
// reads was given: --source=auto then means configmap.
func (o *Options) configMapSourceNamed() bool {
	return o.given("configmap") || o.given("namespace") || o.given("configmap-key") || o.ConfigMapFile != ""
}

// missingForOffline names what offline use lacks when some of its inputs are
// given, or "" when none is (online use was meant).
func (o *Options) missingForOffline() string {
	template := o.hasInputFile()
	switch {
	case template && o.TokenFile == "":
		given := "--configmap-file"
		switch {
		case o.ManifestFile != "":
			given = "--manifest-file"
		case o.ConfigMapFile == "":
			given = "--cni-network-config-file"
		}
		return given + " is given but not --token-file: offline use needs both"
	case !template && o.TokenFile != "":
		return "--token-file is given but neither --manifest-file, --configmap-file nor --cni-network-config-file: offline use needs one of them"
	}
	return ""
}
