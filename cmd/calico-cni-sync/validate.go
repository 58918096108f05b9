package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	"k8s.io/apimachinery/pkg/labels"
)

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
	if _, _, err := o.rolloutPlan(); err != nil {
		errs = append(errs, err)
	}
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
		if o.Fix && !o.Stuck {
			errs = append(errs, errors.New("--fix needs --stuck: it deletes the stuck pods report --stuck lists"))
		}
		if o.Command == "plan" {
			errs = append(errs, o.validatePlan()...)
		}
		if o.RolloutReport && o.Stuck {
			errs = append(errs, errors.New("--rollout and --stuck are two reports: give one"))
		}
		if o.Yes && !o.Fix {
			errs = append(errs, errors.New("--yes needs --fix: it answers the question --fix asks before deleting pods"))
		}
		return errs
	}
	if o.ProbeOnSandboxFailure && (o.Once || !o.CredentialProbe) {
		errs = append(errs, errors.New("--probe-on-sandbox-failure needs the agent with --credential-probe: what a sandbox failure triggers is its probe"))
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
	if err := plainFileName("--cni-kubeconfig-name", o.CNIKubeconfigName); err != nil {
		errs = append(errs, err)
	} else if ext := filepath.Ext(o.CNIKubeconfigName); slices.Contains(cniconf.ConfExtensions, ext) {
		// Runtimes load every file of the CNI directory with one of these
		// extensions, in name order: the kubeconfig would be taken for a
		// network config, and one sorting first shadows Calico's.
		errs = append(errs, fmt.Errorf("--cni-kubeconfig-name %q: container runtimes load a file ending in %s as a CNI network config (one sorting before Calico's shadows it); use a name without %s",
			o.CNIKubeconfigName, strings.Join(cniconf.ConfExtensions, ", "), ext))
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
	// auto asks TokenRequest for the token on every install whose template
	// does not embed one, and the API server refuses a lifetime under 10
	// minutes: every pass would fail.
	if (o.TokenSource == token.SourceTokenRequest || o.TokenSource == token.SourceAuto) && o.TokenTTL > 0 && o.TokenTTL < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--token-ttl %v: must be at least 10m, the API server's minimum for a TokenRequest (--token-source=%s)", o.TokenTTL, o.TokenSource))
	}
	return errs
}

// validateToken refuses token flags that contradict each other: each names
// one source, and a second one would be silently ignored.
func (o *Options) validateToken() []error {
	var errs []error
	switch o.TokenSource {
	case token.SourceAuto, token.SourceSecret, token.SourceTokenRequest:
		if o.TokenFile != "" {
			errs = append(errs, fmt.Errorf("--token-file cannot be used with --token-source=%s: the token would not be read from the file; drop one of them", o.TokenSource))
		}
	case token.SourceFile:
		if o.TokenFile == "" {
			errs = append(errs, errors.New("--token-source=file needs --token-file"))
		}
	default:
		errs = append(errs, fmt.Errorf("--token-source %q: must be auto, secret, tokenrequest or file", o.TokenSource))
	}
	switch o.TokenPolicy {
	case token.PolicyAuto, token.PolicyOwn, token.PolicyGuard:
	default:
		errs = append(errs, fmt.Errorf("--token-policy %q: must be auto, own or guard", o.TokenPolicy))
	}
	switch o.Source {
	case inputs.SourceAuto, inputs.SourceDaemonSet, inputs.SourceConfigMap:
	default:
		errs = append(errs, fmt.Errorf("--source %q: must be auto, daemonset or configmap", o.Source))
	}
	if o.ManifestFile != "" && o.ConfigMapFile != "" {
		errs = append(errs, errors.New("--manifest-file and --configmap-file name two sources of the inputs; give one"))
	}
	if o.ManifestFile != "" && o.Source == inputs.SourceConfigMap {
		errs = append(errs, errors.New("--manifest-file is read for source daemonset; with --source=configmap use --configmap-file"))
	}
	if o.ConfigMapFile != "" && o.Source == inputs.SourceDaemonSet {
		errs = append(errs, errors.New("--configmap-file is read for source configmap; with --source=daemonset use --manifest-file"))
	}
	if o.CalicoDaemonSet != "" {
		if ns, name, ok := strings.Cut(o.CalicoDaemonSet, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("--calico-daemonset %q: want NAMESPACE/NAME", o.CalicoDaemonSet))
		}
	}
	if o.TokenSecret != "" && o.TokenSource != token.SourceSecret {
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

// validatePlan refuses what plan cannot use: it needs the ConfigMap, and
// reads calico-node's DaemonSet (or, offline, a manifest of it).
func (o *Options) validatePlan() []error {
	var errs []error
	if o.PlanFile == "" {
		errs = append(errs, errors.New("plan needs -f FILE: the ConfigMap manifest to plan (- reads stdin)"))
	}
	for _, f := range []struct {
		set  bool
		name string
	}{{o.ConfigMapFile != "", "--configmap-file"}, {o.CNINetworkConfigFile != "", "--cni-network-config-file"}, {o.Source == inputs.SourceConfigMap, "--source=configmap"}} {
		if f.set {
			errs = append(errs, fmt.Errorf("%s cannot be used with plan: plan renders what calico-node's DaemonSet gives install-cni (offline: --manifest-file)", f.name))
		}
	}
	return errs
}

// rolloutPlan reads the rollout flags: the mode and the waves.
func (o *Options) rolloutPlan() (rollout.Mode, rollout.Plan, error) {
	mode, err := rollout.ParseFlag(o.Rollout)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	p := rollout.Plan{CanaryPercent: o.RolloutCanaryPercent, Waves: o.RolloutWaves, Interval: o.RolloutWaveInterval}
	if o.RolloutCanarySelector != "" {
		sel, err := labels.Parse(o.RolloutCanarySelector)
		if err != nil {
			errs = append(errs, fmt.Errorf("--rollout-canary-selector %q: %w", o.RolloutCanarySelector, err))
		}
		p.CanarySelector = sel
	}
	if err := p.Validate(); err != nil {
		errs = append(errs, err)
	}
	return mode, p, errors.Join(errs...)
}
