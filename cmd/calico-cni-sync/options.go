package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
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
	// TokenCheckPeriod is how often the token on disk is checked against the API server.
	TokenCheckPeriod time.Duration
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
	// ChainedPluginTypes and MetaPluginTypes add to the plugin types that
	// other node agents chain into Calico's list (istio-cni, linkerd-cni)
	// and that delegate to Calico from a config sorting first (multus).
	ChainedPluginTypes []string
	MetaPluginTypes    []string

	// changed records the flags given on the command line.
	changed func(name string) bool
}

// NewOptions returns the defaults, with the environment install-cni reads.
func NewOptions() *Options {
	return &Options{
		Source:            sync.SourceAuto,
		Namespace:         "kube-system",
		ConfigMap:         "calico-config",
		ConfigMapKey:      sync.KeyTemplate,
		TokenSource:       sync.SourceAuto,
		TokenPolicy:       sync.PolicyAuto,
		CNINetDir:         envOr("CNI_NET_DIR", "/etc/cni/net.d"),
		CNIKubeconfigName: cniconf.DefaultKubeconfigName,
		OnDrift:           string(cniconf.PolicyReport),
		BackupDir:         "/var/lib/calico-cni-sync/backups",
		StateDir:          "/var/lib/calico-cni-sync/state",
		StatusFile:        "/run/calico-cni-sync/status.json",
		ResyncPeriod:      5 * time.Minute,
		TokenTTL:          24 * time.Hour,
		TokenCheckPeriod:  10 * time.Minute,
		HTTPAddr:          ":9645",
		LogFormat:         "text",
		Output:            "text",
		Selector:          "kubernetes.io/os=linux",
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
	fs.StringVar(&o.Source, "source", o.Source, "where the inputs come from: auto, daemonset (calico-node's DaemonSet, as install-cni gets them) or configmap")
	fs.StringVar(&o.CalicoDaemonSet, "calico-daemonset", o.CalicoDaemonSet, "calico-node's DaemonSet as NAMESPACE/NAME (default: the first of calico-system/calico-node, kube-system/calico-node, kube-system/canal)")
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
	fs.DurationVar(&o.TokenTTL, "token-ttl", o.TokenTTL, "lifetime of TokenRequest tokens")
	fs.DurationVar(&o.TokenCheckPeriod, "token-check-period", o.TokenCheckPeriod, "how often the token on disk is checked against the API server")
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
		o.TokenSource = sync.SourceFile
	}
	if o.TokenSecret != "" && o.TokenFile == "" && !fs.Changed("token-source") {
		o.TokenSource = sync.SourceSecret
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
	}
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
	}
	return nil
}

// Validate reports every problem with the flags at once.
func (o *Options) Validate() error {
	var errs []error
	if o.LogFormat != "text" && o.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: must be text or json", o.LogFormat))
	}
	if o.Output != "text" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: must be text or json", o.Output))
	}
	errs = append(errs, o.validateMode()...)
	errs = append(errs, o.validateNode()...)
	return errors.Join(errs...)
}

// validateMode refuses the mode flags where they cannot mean anything.
func (o *Options) validateMode() []error {
	var errs []error
	if o.Command != "" {
		for _, f := range []struct {
			set  bool
			name string
		}{{o.Once, "--once"}, {o.DryRun, "--dry-run"}} {
			if f.set {
				errs = append(errs, fmt.Errorf("%s cannot be used with %s: %s never writes; calico-cni-sync --once does", f.name, o.Command, o.Command))
			}
		}
		return errs
	}
	if o.AcceptEnvChange && !o.Once {
		errs = append(errs, errors.New("--accept-env-change needs --once: the agent follows changes of its environment anyway"))
	}
	if o.DryRun && !o.Once {
		errs = append(errs, errors.New("--dry-run needs --once: the agent always writes; use --once --dry-run to see what would change"))
	}
	if o.Output != "text" && !o.Once {
		errs = append(errs, errors.New("-o needs --once or a command: the agent prints no report, it keeps --status-file"))
	}
	return errs
}

// validateNode checks the flags that compute and place a node's files.
func (o *Options) validateNode() []error {
	errs := o.validateToken()
	if p := cniconf.Policy(o.OnDrift); p != cniconf.PolicyReport && p != cniconf.PolicyEnforce {
		errs = append(errs, fmt.Errorf("--on-drift %q: must be report or enforce", o.OnDrift))
	}
	if o.CNINetDir == "" {
		errs = append(errs, errors.New("--cni-net-dir must not be empty"))
	}
	if o.NodeName == "" {
		errs = append(errs, errors.New("no node name: give --node-name (or set NODE_NAME); the hostname could not be read"))
	}
	if o.Namespace == "" || o.ConfigMap == "" || o.ConfigMapKey == "" {
		errs = append(errs, errors.New("--namespace, --configmap and --configmap-key must not be empty"))
	}
	if o.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(o.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("--http-addr %q: want HOST:PORT or :PORT: %w", o.HTTPAddr, err))
		}
	}
	if within(o.StatusFile, o.CNINetDir) {
		errs = append(errs, fmt.Errorf("--status-file %s must not be inside --cni-net-dir %s: a runtime would load a .json there", o.StatusFile, o.CNINetDir))
	}
	if o.CNIConfName != "" {
		errs = append(errs, plainFileName("--cni-conf-name", o.CNIConfName))
	}
	errs = append(errs, plainFileName("--cni-kubeconfig-name", o.CNIKubeconfigName))
	if within(o.BackupDir, o.CNINetDir) {
		errs = append(errs, fmt.Errorf("--backup-dir %s must not be inside --cni-net-dir %s: runtimes would load the backups", o.BackupDir, o.CNINetDir))
	}
	if within(o.StateDir, o.CNINetDir) {
		errs = append(errs, fmt.Errorf("--state-dir %s must not be inside --cni-net-dir %s", o.StateDir, o.CNINetDir))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--resync-period", o.ResyncPeriod}, {"--token-ttl", o.TokenTTL}, {"--token-check-period", o.TokenCheckPeriod}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if o.TokenSource == sync.SourceTokenRequest && o.TokenTTL < 10*time.Minute {
		errs = append(errs, errors.New("--token-ttl must be at least 10m (the API server's minimum)"))
	}
	return errs
}

// validateToken refuses token flags that contradict each other: each names
// one source, and a second one would be silently ignored.
func (o *Options) validateToken() []error {
	var errs []error
	switch o.TokenSource {
	case sync.SourceAuto, sync.SourceSecret, sync.SourceTokenRequest:
		if o.TokenFile != "" {
			errs = append(errs, fmt.Errorf("--token-file cannot be used with --token-source=%s: the token would not be read from the file; drop one of them", o.TokenSource))
		}
	case sync.SourceFile:
		if o.TokenFile == "" {
			errs = append(errs, errors.New("--token-source=file needs --token-file"))
		}
	default:
		errs = append(errs, fmt.Errorf("--token-source %q: must be auto, secret, tokenrequest or file", o.TokenSource))
	}
	switch o.TokenPolicy {
	case sync.PolicyAuto, sync.PolicyOwn, sync.PolicyGuard:
	default:
		errs = append(errs, fmt.Errorf("--token-policy %q: must be auto, own or guard", o.TokenPolicy))
	}
	switch o.Source {
	case sync.SourceAuto, sync.SourceDaemonSet, sync.SourceConfigMap:
	default:
		errs = append(errs, fmt.Errorf("--source %q: must be auto, daemonset or configmap", o.Source))
	}
	if o.ManifestFile != "" && o.ConfigMapFile != "" {
		errs = append(errs, errors.New("--manifest-file and --configmap-file name two sources of the inputs; give one"))
	}
	if o.ManifestFile != "" && o.Source == sync.SourceConfigMap {
		errs = append(errs, errors.New("--manifest-file is read for source daemonset; with --source=configmap use --configmap-file"))
	}
	if o.ConfigMapFile != "" && o.Source == sync.SourceDaemonSet {
		errs = append(errs, errors.New("--configmap-file is read for source configmap; with --source=daemonset use --manifest-file"))
	}
	if o.CalicoDaemonSet != "" {
		if ns, name, ok := strings.Cut(o.CalicoDaemonSet, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("--calico-daemonset %q: want NAMESPACE/NAME", o.CalicoDaemonSet))
		}
	}
	if o.TokenSecret != "" && o.TokenSource != sync.SourceSecret {
		errs = append(errs, fmt.Errorf("--token-secret needs --token-source=secret, not %s: a pinned Secret is read only by that source", o.TokenSource))
	}
	return errs
}

// plainFileName refuses a name that would put a file outside the CNI
// directory (a path separator, "..") or where runtimes and our own
// temporary files live (a leading dot: WriteAtomic's temporaries are
// ".<name><digits>", and runtimes skip hidden files).
func plainFileName(flag, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s must not be empty", flag)
	case strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator):
		return fmt.Errorf("%s %q must be a plain file name in --cni-net-dir, not a path", flag, name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%s %q must be a plain file name: not \".\", \"..\" or hidden (a leading dot)", flag, name)
	}
	return nil
}

// within reports whether dir is dir2 or below it, following symlinks of
// whatever part of each path exists.
func within(dir, dir2 string) bool {
	if dir == "" || dir2 == "" {
		return false
	}
	a, errA := resolved(dir)
	b, errB := resolved(dir2)
	if errA != nil || errB != nil {
		return false
	}
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// resolved is path made absolute with the symlinks of its longest existing
// prefix resolved: a state directory that is a link into the CNI
// directory is inside it.
func resolved(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest), nil
		}
		if p == filepath.Dir(p) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// offline reports whether the command has every input it needs without an
// API server.
func (o *Options) offline() bool {
	return o.hasInputFile() && o.TokenSource == sync.SourceFile
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
