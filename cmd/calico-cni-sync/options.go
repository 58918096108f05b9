package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
)

// Options are the command line of every mode.
type Options struct {
	// Kubeconfig is the agent's own kubeconfig; else $KUBECONFIG, else in-cluster.
	Kubeconfig string
	// Namespace holds calico-config and the token Secrets.
	Namespace string
	// ConfigMap is the name of the calico-config ConfigMap.
	ConfigMap string
	// NodeName is this node; else KUBERNETES_NODE_NAME, NODE_NAME, the hostname.
	NodeName string
	// TokenSource is secret, tokenrequest or file.
	TokenSource string
	// ServiceAccount whose token the CNI plugin uses.
	ServiceAccount string
	// TokenSecret pins one token Secret instead of following the newest.
	TokenSecret string
	// TokenFile is the token file for the file source.
	TokenFile string
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
	// TokenTTL is the lifetime asked of the TokenRequest API.
	TokenTTL time.Duration
	// TokenCheckPeriod is how often the token on disk is checked against the API server.
	TokenCheckPeriod time.Duration
	// HTTPAddr serves /metrics, /healthz and /readyz.
	HTTPAddr string
	// LogFormat is text or json.
	LogFormat string
	// Verbosity is the log level: 0 info, 1+ debug, and client-go's own -v.
	Verbosity int
	// Output is text or json for drift and report.
	Output string
	// Once reconciles this node once and exits.
	Once bool
	// DryRun, with --once, prints a diff and writes nothing.
	DryRun bool
}

// NewOptions returns the defaults, with the environment install-cni reads.
func NewOptions() *Options {
	return &Options{
		Namespace:         "kube-system",
		ConfigMap:         "calico-config",
		TokenSource:       sync.SourceSecret,
		ServiceAccount:    "calico-node",
		CNINetDir:         envOr("CNI_NET_DIR", "/etc/cni/net.d"),
		CNIConfName:       os.Getenv("CNI_CONF_NAME"),
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
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// AddFlags registers every flag.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the agent (default $KUBECONFIG, else in-cluster)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the ConfigMap and the token Secrets")
	fs.StringVar(&o.ConfigMap, "configmap", o.ConfigMap, "name of Calico's ConfigMap")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name (default $KUBERNETES_NODE_NAME, $NODE_NAME, the hostname)")
	fs.StringVar(&o.TokenSource, "token-source", o.TokenSource, "where the token comes from: secret, tokenrequest or file")
	fs.StringVar(&o.ServiceAccount, "service-account", o.ServiceAccount, "service account whose token the CNI plugin uses")
	fs.StringVar(&o.TokenSecret, "token-secret", o.TokenSecret, "pin one token Secret by name instead of following the newest")
	fs.StringVar(&o.TokenFile, "token-file", o.TokenFile, "token file (implies --token-source=file)")
	fs.StringVar(&o.ConfigMapFile, "configmap-file", o.ConfigMapFile, "read the ConfigMap from this manifest (YAML or JSON) instead of the API")
	fs.StringVar(&o.CNINetworkConfigFile, "cni-network-config-file", o.CNINetworkConfigFile, "read the cni_network_config template from this file")
	fs.StringVar(&o.CAFile, "ca-file", o.CAFile, "CA for the kubeconfig when the token Secret has no ca.crt")
	fs.StringVar(&o.CNINetDir, "cni-net-dir", o.CNINetDir, "CNI configuration directory (env CNI_NET_DIR)")
	fs.StringVar(&o.CNIConfName, "cni-conf-name", o.CNIConfName, "conf file name (env CNI_CONF_NAME; default by content: 10-calico.conflist or 10-calico.conf)")
	fs.StringVar(&o.CNIKubeconfigName, "cni-kubeconfig-name", o.CNIKubeconfigName, "kubeconfig file name in the CNI directory")
	fs.StringVar(&o.OnDrift, "on-drift", o.OnDrift, "what to do with a hand-edited file: report (keep it) or enforce (back up and restore)")
	fs.StringVar(&o.BackupDir, "backup-dir", o.BackupDir, "where replaced hand edits and corrupt files are kept")
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "where the token-free record of written files is kept")
	fs.StringVar(&o.StatusFile, "status-file", o.StatusFile, "status file (empty disables)")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "full reconcile period of the agent")
	fs.DurationVar(&o.TokenTTL, "token-ttl", o.TokenTTL, "lifetime of TokenRequest tokens")
	fs.DurationVar(&o.TokenCheckPeriod, "token-check-period", o.TokenCheckPeriod, "how often the token on disk is checked against the API server")
	fs.StringVar(&o.HTTPAddr, "http-addr", o.HTTPAddr, "address for /metrics, /healthz and /readyz")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text or json")
	fs.IntVarP(&o.Verbosity, "v", "v", o.Verbosity, "log verbosity")
	fs.StringVarP(&o.Output, "output", "o", o.Output, "output of drift and report: text or json")
	fs.BoolVar(&o.Once, "once", o.Once, "reconcile this node once and exit")
	fs.BoolVar(&o.DryRun, "dry-run", o.DryRun, "with --once: print a unified diff, write nothing")
}

// Complete fills what depends on other flags and the environment.
func (o *Options) Complete(fs *pflag.FlagSet) {
	if o.TokenFile != "" && !fs.Changed("token-source") {
		o.TokenSource = sync.SourceFile
	}
	if o.NodeName == "" {
		o.NodeName = os.Getenv("KUBERNETES_NODE_NAME")
	}
	if o.NodeName == "" {
		o.NodeName = os.Getenv("NODE_NAME")
	}
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
	}
}

// Validate reports every problem with the flags at once.
func (o *Options) Validate() error {
	var errs []error
	switch o.TokenSource {
	case sync.SourceSecret, sync.SourceTokenRequest:
	case sync.SourceFile:
		if o.TokenFile == "" {
			errs = append(errs, errors.New("--token-source=file needs --token-file"))
		}
	default:
		errs = append(errs, fmt.Errorf("--token-source %q: must be secret, tokenrequest or file", o.TokenSource))
	}
	if o.TokenSecret != "" && o.TokenSource != sync.SourceSecret {
		errs = append(errs, errors.New("--token-secret needs --token-source=secret"))
	}
	if p := cniconf.Policy(o.OnDrift); p != cniconf.PolicyReport && p != cniconf.PolicyEnforce {
		errs = append(errs, fmt.Errorf("--on-drift %q: must be report or enforce", o.OnDrift))
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: must be text or json", o.LogFormat))
	}
	if o.Output != "text" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: must be text or json", o.Output))
	}
	if o.DryRun && !o.Once {
		errs = append(errs, errors.New("--dry-run needs --once"))
	}
	if o.CNINetDir == "" {
		errs = append(errs, errors.New("--cni-net-dir must not be empty"))
	}
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
	return errors.Join(errs...)
}

// within reports whether dir is dir2 or below it.
func within(dir, dir2 string) bool {
	if dir == "" || dir2 == "" {
		return false
	}
	a, errA := filepath.Abs(dir)
	b, errB := filepath.Abs(dir2)
	if errA != nil || errB != nil {
		return false
	}
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// offline reports whether the command can run with no API server.
func (o *Options) offline() bool {
	return (o.ConfigMapFile != "" || o.CNINetworkConfigFile != "") && o.TokenSource == sync.SourceFile
}
