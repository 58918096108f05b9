package sync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// Report is one node's state: drift -o json prints it and the agent keeps it
// in the status file.
type Report struct {
	Node      string               `json:"node"`
	CheckedAt time.Time            `json:"checkedAt"`
	Files     []cniconf.FileStatus `json:"files"`
	Source    *SourceInfo          `json:"source,omitempty"`
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

// Token policies (--token-policy).
const (
	PolicyAuto  = "auto"
	PolicyOwn   = "own"
	PolicyGuard = "guard"
)

// Reconciler computes what the node's files should be and puts them right.
// It is the one road every trigger takes: --once, drift, and each pass of the
// agent's loop.
type Reconciler struct {
	Dir      cniconf.Dir
	NodeName string
	// ConfName is --cni-conf-name when given; else install-cni's
	// CNI_CONF_NAME, else the name follows the content.
	ConfName       string
	KubeconfigName string
	// CA gives the fallback CA for the kubeconfig (--ca-file, else the
	// agent's own), read again at every pass so that a rotated CA (the
	// kubelet updates a pod's ca.crt in place) is followed. Nil: none.
	CA func() ([]byte, error)
	// Install gives what install-cni would get.
	Install InstallSource
	// Fresh, when set, gives the same read straight from the API server;
	// it is asked before --on-drift=enforce replaces a hand edit, so that a
	// cache a moment behind never rolls a newer input back (the agent).
	Fresh InstallSource
	Token TokenSource
	// TokenSourceName is reported when the token cannot be read.
	TokenSourceName string
	// ServiceAccount overrides the CNI service account (--service-account).
	ServiceAccount string
	// Policy is own, guard or auto (--token-policy).
	Policy string
	// Verdicts holds the API server's verdicts on tokens; nil offline.
	// They are asked under policy guard, which judges by them, and, when
	// CheckTokens is set (the agent, drift), to report the token on disk.
	Verdicts    *VerdictCache
	CheckTokens bool
	// Now is the node's clock; nil means time.Now.
	Now func() time.Time
	// KeepFacts refuses a write that would change a value the last write
	// took from the node's environment (node name, API address, MTU): a
	// hand repair must not rewrite what the node was given (--once without
	// --accept-env-change). The agent follows such changes.
	KeepFacts bool
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
	rep := &Report{Node: r.NodeName, CheckedAt: r.now().UTC().Truncate(time.Second), Token: TokenInfo{Source: r.TokenSourceName}}
	plan, err := r.plan(ctx, r.Install)
	if err == nil && mode == ModeSync && r.Fresh != nil && r.Dir.Policy == cniconf.PolicyEnforce && anyDrifted(r.Dir.Check(plan.want)) {
		plan, err = r.plan(ctx, r.Fresh)
	}
	if plan != nil {
		rep.Source, rep.Token = plan.source, plan.tokenInfo()
	}
	if err != nil {
		tok := ""
		if plan != nil {
			tok = plan.token.Value
		}
		err = errors.New(cniconf.Redact(err.Error(), tok))
		rep.Files = r.errorStatuses(err, plan)
		return rep, nil, err
	}
	want := plan.want
	if r.KeepFacts && mode != ModeCheck {
		if changes := cniconf.ChangedFacts(cniconf.RecordedFacts(r.Dir.StateDir, r.Dir.NetDir), want.Facts); len(changes) > 0 {
			msgs := make([]string, len(changes))
			for i, c := range changes {
				msgs[i] = c.String()
			}
			err := fmt.Errorf("refusing to write: %s; name the node with --node-name and run with the node's environment, or pass --accept-env-change if the change is meant", strings.Join(msgs, "; "))
			rep.Files = r.errorStatuses(err, plan)
			return rep, nil, err
		}
	}
	if mode != ModeSync && plan.policy != PolicyGuard && r.checksTokens(plan.policy) {
		r.Verdicts.Refresh(ctx, r.Dir.TokensOnDisk(want), false)
	}
	switch mode {
	case ModeCheck:
		rep.Files = r.Dir.Check(want)
		plan.describeDisk(rep, r.Dir)
		return rep, want, fileErrors(rep.Files)
	case ModeDryRun:
		rep.Files, err = r.Dir.Sync(want, true)
		plan.describeDisk(rep, r.Dir)
		return rep, want, errors.Join(err, fileErrors(rep.Files))
	}
	done, err := r.Dir.Sync(want, false)
	if r.checksTokens(plan.policy) {
		// A token just written is checked now, so the report says
		// whether it works.
		r.Verdicts.Refresh(ctx, r.Dir.TokensOnDisk(want), false)
	}
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
	plan.describeDisk(rep, r.Dir)
	if err != nil {
		return rep, want, err
	}
	return rep, want, fileErrors(rep.Files)
}

func anyDrifted(files []cniconf.FileStatus) bool {
	for _, f := range files {
		if f.State == cniconf.Drifted {
			return true
		}
	}
	return false
}

// checksTokens says whether this pass asks the API server about the tokens
// on disk.
func (r *Reconciler) checksTokens(policy string) bool {
	return r.Verdicts != nil && (policy == PolicyGuard || r.CheckTokens)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Desired reads the inputs and renders the files they call for.
func (r *Reconciler) Desired(ctx context.Context) (*cniconf.Desired, Token, error) {
	p, err := r.plan(ctx, r.Install)
	if p == nil {
		return nil, Token{}, err
	}
	return p.want, p.token, err
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

// errorStatuses reports the files that would be managed as Error, without
// touching them.
func (r *Reconciler) errorStatuses(err error, p *pass) []cniconf.FileStatus {
	template := ""
	if p != nil {
		template = p.template
	}
	name := r.ConfName
	switch {
	case name != "":
	case template != "" && strings.Contains(template, `"plugins"`):
		name = cniconf.DefaultConfListName
	case template != "":
		name = cniconf.DefaultConfName // a single-plugin template (Calico v2.x)
	default:
		name = cniconf.DefaultConfListName
		if _, statErr := os.Stat(filepath.Join(r.Dir.NetDir, cniconf.DefaultConfName)); statErr == nil {
			name = cniconf.DefaultConfName
		}
	}
	names := []string{name}
	// The kubeconfig is in Error too when the template refers to it, or
	// when it is on disk: its state must not freeze at the last one.
	_, statErr := os.Stat(filepath.Join(r.Dir.NetDir, r.KubeconfigName))
	if strings.Contains(template, "__KUBECONFIG_FILE") || statErr == nil {
		names = append(names, r.KubeconfigName)
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
