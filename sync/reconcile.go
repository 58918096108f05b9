package sync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// Report is one node's state: drift -o json prints it and the agent keeps it
// in the status file.
type Report struct {
	Node      string               `json:"node"`
	CheckedAt time.Time            `json:"checkedAt"`
	Files     []cniconf.FileStatus `json:"files"`
	Token     TokenInfo            `json:"token"`
}

// Worst is the state reported for the node: the first in the contract's
// order among its files.
func (r *Report) Worst() cniconf.State {
	worst := cniconf.InSync
	for _, f := range r.Files {
		if f.State.Severity() < worst.Severity() {
			worst = f.State
		}
	}
	return worst
}

// Reconciler computes what the node's files should be and puts them right.
// It is the one road every trigger takes: --once, drift, and each pass of the
// agent's loop.
type Reconciler struct {
	Dir            cniconf.Dir
	NodeName       string
	ConfName       string
	KubeconfigName string
	// TemplateFile replaces the ConfigMap's template (--cni-network-config-file).
	TemplateFile string
	// CA is the fallback CA for the kubeconfig (--ca-file, else the agent's own).
	CA []byte
	// Env looks up install-cni's environment variables.
	Env       func(string) (string, bool)
	ConfigMap ConfigMapSource
	Token     TokenSource
	// TokenSourceName is reported when the token cannot be read.
	TokenSourceName string
}

// Mode says how much a reconcile may do.
type Mode int

// Modes.
const (
	ModeSync   Mode = iota // write what the state table says
	ModeDryRun             // say what would be written
	ModeCheck              // only look (drift)
)

// Reconcile computes the desired files and checks or syncs them. An error
// means the desired content could not be computed (every file is then
// reported as Error and left alone) or a write failed.
func (r *Reconciler) Reconcile(ctx context.Context, mode Mode) (*Report, *cniconf.Desired, error) {
	rep := &Report{Node: r.NodeName, CheckedAt: time.Now().UTC().Truncate(time.Second), Token: TokenInfo{Source: r.TokenSourceName}}
	want, tok, err := r.Desired(ctx)
	if tok.Value != "" || tok.Source != "" {
		rep.Token = tok.Info()
	}
	if err != nil {
		err = errors.New(cniconf.Redact(err.Error(), tok.Value))
		rep.Files = r.errorStatuses(err)
		return rep, nil, err
	}
	switch mode {
	case ModeCheck:
		rep.Files = r.Dir.Check(want)
		return rep, want, fileErrors(rep.Files)
	case ModeDryRun:
		rep.Files, err = r.Dir.Sync(want, true)
		return rep, want, errors.Join(err, fileErrors(rep.Files))
	}
	done, err := r.Dir.Sync(want, false)
	// What is reported is the state after the actions: a rotated token or
	// a rewritten file is InSync now, a kept edit is still Drifted.
	after := r.Dir.Check(want)
	for i := range after {
		after[i].Found, after[i].FoundPaths = done[i].State, done[i].ChangedPaths
		after[i].Action, after[i].Backup, after[i].SettleFor = done[i].Action, done[i].Backup, done[i].SettleFor
		if done[i].Message != "" && after[i].Message == "" {
			after[i].Message = done[i].Message
		}
	}
	rep.Files = after
	if err != nil {
		return rep, want, err
	}
	return rep, want, fileErrors(rep.Files)
}

// fileErrors makes a file in state Error an error of the pass: an Error is
// never a success, whatever else the pass did.
func fileErrors(files []cniconf.FileStatus) error {
	var errs []error
	for _, f := range files {
		if f.State == cniconf.Error {
			errs = append(errs, fmt.Errorf("%s: %s", f.Path, f.Message))
		}
	}
	return errors.Join(errs...)
}

// Desired reads the inputs and renders the files they call for.
func (r *Reconciler) Desired(ctx context.Context) (*cniconf.Desired, Token, error) {
	cm, err := r.ConfigMap(ctx)
	if err != nil {
		return nil, Token{}, err
	}
	template := cm.Data[KeyTemplate]
	if r.TemplateFile != "" {
		data, err := os.ReadFile(r.TemplateFile)
		if err != nil {
			return nil, Token{}, fmt.Errorf("read --cni-network-config-file: %w", err)
		}
		template = string(data)
	}
	if template == "" {
		return nil, Token{}, errNoTemplate
	}
	tok, err := r.Token.Token(ctx)
	if err != nil {
		return nil, Token{Source: r.TokenSourceName}, err
	}
	ca := tok.CA
	if len(ca) == 0 {
		ca = r.CA
	}
	in := &cniconf.Inputs{
		Template: template, Env: r.Env, NodeName: r.NodeName, NetDir: r.Dir.NetDir,
		KubeconfigName: r.KubeconfigName, VethMTU: cm.Data[KeyVethMTU],
		EtcdEndpoints: cm.Data[KeyEtcdEndpoints], Token: tok.Value, CA: ca,
	}
	want, err := cniconf.BuildDesired(in, r.ConfName)
	if err != nil {
		return nil, tok, fmt.Errorf("render %s: %w", KeyTemplate, err)
	}
	return want, tok, nil
}

// errorStatuses reports the files that would be managed as Error, without
// touching them.
func (r *Reconciler) errorStatuses(err error) []cniconf.FileStatus {
	names := []string{r.ConfName}
	if r.ConfName == "" {
		names = []string{cniconf.DefaultConfListName}
		if _, statErr := os.Stat(filepath.Join(r.Dir.NetDir, cniconf.DefaultConfName)); statErr == nil {
			names = []string{cniconf.DefaultConfName}
		}
	}
	out := make([]cniconf.FileStatus, 0, len(names))
	for _, n := range names {
		out = append(out, cniconf.FileStatus{
			Path: filepath.Join(r.Dir.NetDir, n), State: cniconf.Error,
			ChangedPaths: []string{}, Message: err.Error(),
		})
	}
	return out
}
