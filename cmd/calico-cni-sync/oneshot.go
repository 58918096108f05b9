package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
)

// restConfig is --kubeconfig, else $KUBECONFIG, else in-cluster.
func restConfig(o *Options) (*rest.Config, error) {
	path := o.Kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig, no $KUBECONFIG and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// apiCA is the CA the agent itself trusts, the last fallback for the
// kubeconfig it writes.
func apiCA(cfg *rest.Config) []byte {
	if len(cfg.CAData) > 0 {
		return cfg.CAData
	}
	if cfg.CAFile != "" {
		if b, err := os.ReadFile(cfg.CAFile); err == nil {
			return b
		}
	}
	return nil
}

// newReconciler wires the inputs the flags name. client is nil offline.
func newReconciler(o *Options, cfg *rest.Config, client kubernetes.Interface) (*sync.Reconciler, error) {
	r := &sync.Reconciler{
		Dir: cniconf.Dir{
			NetDir: o.CNINetDir, BackupDir: o.BackupDir, StateDir: o.StateDir,
			Policy: cniconf.Policy(o.OnDrift), BackupsKept: cniconf.DefaultBackupsKept,
		},
		NodeName: o.NodeName, ConfName: o.CNIConfName, KubeconfigName: o.CNIKubeconfigName,
		TemplateFile: o.CNINetworkConfigFile, Env: os.LookupEnv, TokenSourceName: o.TokenSource,
	}
	if o.CAFile != "" {
		ca, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca-file: %w", err)
		}
		r.CA = ca
	} else if cfg != nil {
		r.CA = apiCA(cfg)
	}
	switch {
	case o.ConfigMapFile != "":
		r.ConfigMap = sync.ConfigMapFromFile(o.ConfigMapFile)
	case o.CNINetworkConfigFile != "" && client == nil:
		// The template alone: MTU and etcd endpoints come from the environment.
		r.ConfigMap = func(context.Context) (*corev1.ConfigMap, error) { return &corev1.ConfigMap{}, nil }
	default:
		r.ConfigMap = sync.ConfigMapFromAPI(client, o.Namespace, o.ConfigMap)
	}
	switch o.TokenSource {
	case sync.SourceFile:
		r.Token = sync.TokenFromFile(o.TokenFile)
	case sync.SourceTokenRequest:
		r.Token = sync.NewTokenRequester(client, o.Namespace, o.ServiceAccount, o.TokenTTL, nil)
	default:
		r.Token = sync.SecretTokenFromAPI(client, o.Namespace, o.ServiceAccount, o.TokenSecret)
	}
	return r, nil
}

// clientFor builds the API client unless the command runs offline.
func clientFor(o *Options) (*rest.Config, kubernetes.Interface, error) {
	if o.offline() {
		return nil, nil, nil
	}
	cfg, err := restConfig(o)
	if err != nil {
		return nil, nil, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, client, nil
}

func newClient(cfg *rest.Config) (kubernetes.Interface, error) {
	cfg.UserAgent = "calico-cni-sync/" + version
	// Idle, the agent makes no request beyond its watches; when it acts,
	// a condition patch and an event must not queue behind client-go's
	// default 5 QPS.
	cfg.QPS, cfg.Burst = 20, 40
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	return client, nil
}

// oneShotReconciler wires --once and drift: online with a client, or
// offline with none (cfg is then nil).
func oneShotReconciler(o *Options) (*rest.Config, *sync.Reconciler, error) {
	cfg, client, err := clientFor(o)
	if err != nil {
		return nil, nil, errors.New(cniconf.Redact(err.Error()))
	}
	r, err := newReconciler(o, cfg, client)
	return cfg, r, err
}

// runOnce reconciles this node once: the repair of a broken node.
func runOnce(ctx context.Context, o *Options, stdout, stderr io.Writer) int {
	_, r, err := oneShotReconciler(o)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %s\n", err)
		return exitError
	}
	mode := sync.ModeSync
	if o.DryRun {
		mode = sync.ModeDryRun
	}
	rep, _, err := r.Reconcile(ctx, mode)
	if err != nil {
		printFiles(stdout, rep, o.DryRun)
		_, _ = fmt.Fprintf(stderr, "error: %s\n", err)
		return exitError
	}
	printFiles(stdout, rep, o.DryRun)
	code := exitOK
	for _, f := range rep.Files {
		if (o.DryRun && f.WouldChange) || f.State == cniconf.Drifted {
			code = exitDrift
		}
	}
	return code
}

// printFiles is --once's account of what it found and did.
func printFiles(w io.Writer, rep *sync.Report, dryRun bool) {
	for _, f := range rep.Files {
		line := fmt.Sprintf("%s: %s", f.Path, f.State)
		if f.Found != "" && f.Found != f.State {
			line = fmt.Sprintf("%s: %s, now %s", f.Path, f.Found, f.State)
		}
		switch {
		case f.Action == cniconf.ActionWritten:
			line += " (written)"
		case f.Action == cniconf.ActionRotated:
			line += " (token replaced)"
		case f.Action == cniconf.ActionRestored:
			line += " (hand edit backed up and restored)"
		case dryRun && f.WouldChange:
			line += " (would be written)"
		}
		if len(f.ChangedPaths) > 0 {
			line += "; changed: " + strings.Join(f.ChangedPaths, ", ")
		}
		if f.Backup != "" {
			line += "; backup: " + f.Backup
		}
		if f.Message != "" {
			line += "; " + f.Message
		}
		_, _ = fmt.Fprintln(w, line)
		if dryRun && f.WouldChange && f.Diff != "" {
			_, _ = fmt.Fprint(w, f.Diff)
		}
	}
}

// runDrift shows this node's state and writes nothing.
func runDrift(ctx context.Context, o *Options, stdout, stderr io.Writer) int {
	cfg, r, err := oneShotReconciler(o)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %s\n", err)
		return exitError
	}
	rep, want, err := r.Reconcile(ctx, sync.ModeCheck)
	if err == nil && cfg != nil && want != nil {
		rep.Token.Accepted = sync.CheckAcceptedOnDisk(ctx, cfg, r.Dir, want)
	}
	if perr := printReport(stdout, rep, o.Output); perr != nil {
		_, _ = fmt.Fprintf(stderr, "error: %v\n", perr)
		return exitError
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %s\n", err)
		return exitError
	}
	if rep.Worst() != cniconf.InSync || (rep.Token.Accepted != nil && !*rep.Token.Accepted) {
		return exitDrift
	}
	return exitOK
}

func printReport(w io.Writer, rep *sync.Report, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	_, _ = fmt.Fprintf(w, "node %s, checked %s\n", rep.Node, rep.CheckedAt.Format("2006-01-02T15:04:05Z"))
	tok := "token: source " + rep.Token.Source
	if rep.Token.Secret != "" {
		tok += ", secret " + rep.Token.Secret
	}
	if rep.Token.Subject != nil {
		tok += ", subject " + *rep.Token.Subject
	}
	if rep.Token.ExpiresAt != nil {
		tok += ", expires " + rep.Token.ExpiresAt.Format("2006-01-02T15:04:05Z")
	}
	if rep.Token.Accepted != nil {
		tok += fmt.Sprintf(", accepted by the API server: %t", *rep.Token.Accepted)
	}
	_, _ = fmt.Fprintln(w, tok)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "FILE\tSTATE\tCHANGED")
	for _, f := range rep.Files {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Path, f.State, strings.Join(f.ChangedPaths, ","))
	}
	_ = tw.Flush()
	for _, f := range rep.Files {
		if f.Message != "" {
			_, _ = fmt.Fprintf(w, "%s: %s\n", f.Path, f.Message)
		}
		if f.Diff != "" {
			_, _ = fmt.Fprint(w, f.Diff)
		}
	}
	return nil
}
