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

// pass is what one reconcile works from: the inputs, the token and the
// policy that judges the token on disk.
type pass struct {
	// template is the one the inputs gave, when they gave one.
	template string
	want     *cniconf.Desired
	token    Token
	source   *SourceInfo
	account  Account
	policy   string
	manage   bool // calico-node refreshes the token itself
	health   TokenHealth
}

// plan reads the inputs, picks the token and the policy, and renders.
func (r *Reconciler) plan(ctx context.Context, install InstallSource) (*pass, error) {
	in, err := install(ctx)
	if err != nil {
		return nil, err
	}
	p := &pass{source: &in.Source, template: in.Template}
	if in.HostPath != "" && filepath.Clean(in.HostPath) != filepath.Clean(r.Dir.NetDir) {
		return p, fmt.Errorf("DaemonSet %s writes CNI configs to the host directory %s, but this agent writes %s: set --cni-net-dir (and the agent's hostPath mount) to %s", in.Source.DaemonSet, in.HostPath, r.Dir.NetDir, in.HostPath)
	}
	inConf := strings.Contains(in.Template, cniconf.TokenPlaceholder)
	p.account = Account{Namespace: in.Namespace, Name: in.CNIServiceAccount}
	if r.ServiceAccount != "" {
		p.account.Name = r.ServiceAccount
	}
	p.policy = r.Policy
	if p.policy == "" || p.policy == PolicyAuto {
		p.policy = PolicyOwn
		if in.ManageCNI && !inConf {
			p.policy = PolicyGuard
		}
	}
	p.manage = in.ManageCNI && !inConf
	need := TokenNeed{Account: p.account, InConf: inConf}
	tok, err := r.Token.Token(ctx, need)
	p.token = tok
	if err != nil {
		return p, err
	}
	if p.account.Name == "" && tok.Source == SourceFile {
		// Offline with nothing naming the account: the token says whose
		// it is.
		p.account = accountOf(ParseClaims(tok.Value).Subject, p.account)
	}
	p.health = TokenHealth{Subject: p.account.Subject(), Now: r.Now}
	if r.Verdicts != nil {
		p.health.Verdict = r.Verdicts.Known
	}
	if p.policy == PolicyGuard {
		if ok, why := p.health.Judge(tok.Value); !ok && !strings.Contains(why, "rejected") {
			return p, fmt.Errorf("the %s token cannot repair the node's token: it is %s (policy guard)", tokenOrigin(tok), why)
		}
	}
	want, err := r.render(in, tok)
	if err != nil {
		return p, err
	}
	if r.checksTokens(p.policy) {
		// The API server's word on the tokens on disk, asked when a token
		// is new and every period: what policy guard judges by.
		r.Verdicts.Refresh(ctx, r.Dir.TokensOnDisk(want), false)
	}
	if p.policy == PolicyGuard && r.Verdicts != nil && r.repairDue(want, p.health) {
		// A repair must not write a token that is dead too: after a
		// signing-key rotation the source's cached token is rejected
		// like the one on disk. Ask once, and take a fresh one if so.
		if v := r.Verdicts.CheckNow(ctx, tok.Value); v != nil && !*v {
			inv, ok := r.Token.(invalidator)
			if !ok {
				return p, fmt.Errorf("the %s token cannot repair the node's token: the API server rejects it too", tokenOrigin(tok))
			}
			inv.Invalidate()
			if tok, err = r.Token.Token(ctx, need); err != nil {
				return p, err
			}
			p.token = tok
			if want, err = r.render(in, tok); err != nil {
				return p, err
			}
		}
	}
	if p.policy == PolicyGuard {
		want.SetTokenJudge(p.health.Judge)
	}
	p.want = want
	return p, nil
}

// invalidator is a token source that can be told its token is dead.
type invalidator interface{ Invalidate() }

// repairDue reports whether a pass under policy guard will write the
// source's token: a file is missing its token, or holds an unhealthy one.
func (r *Reconciler) repairDue(want *cniconf.Desired, h TokenHealth) bool {
	tokens := r.Dir.TokensOnDisk(want)
	if len(tokens) == 0 {
		return true
	}
	for _, t := range tokens {
		if ok, _ := h.Judge(t); !ok {
			return true
		}
	}
	return false
}

// render builds the desired files from the inputs and a token.
func (r *Reconciler) render(in *Install, tok Token) (*cniconf.Desired, error) {
	ca := tok.CA
	if len(ca) == 0 && r.CA != nil {
		var err error
		if ca, err = r.CA(); err != nil {
			return nil, err
		}
	}
	confName := r.ConfName
	if confName == "" && in.Env != nil {
		confName, _ = in.Env("CNI_CONF_NAME")
	}
	inputs := &cniconf.Inputs{
		Template: in.Template, Env: in.Env, NodeName: r.NodeName, NetDir: r.Dir.NetDir, KubeconfigDir: in.KubeconfigDir,
		KubeconfigName: r.KubeconfigName, VethMTU: in.VethMTU, EtcdEndpoints: in.EtcdEndpoints, Token: tok.Value, CA: ca,
	}
	want, err := cniconf.BuildDesired(inputs, confName)
	if err != nil {
		return nil, fmt.Errorf("render the template from %s: %w", describeSource(in.Source), err)
	}
	return want, nil
}

// tokenOrigin names where a token came from, for errors.
func tokenOrigin(t Token) string {
	switch {
	case t.File != "":
		return "--token-file " + t.File
	case t.Secret != "":
		return "Secret " + t.Secret
	default:
		return t.Source
	}
}

func describeSource(s SourceInfo) string {
	switch {
	case s.Pod != "":
		return "pod " + s.Pod + " of DaemonSet " + s.DaemonSet
	case s.DaemonSet != "":
		return "DaemonSet " + s.DaemonSet
	case len(s.ConfigMaps) > 0:
		return "ConfigMap " + strings.Join(s.ConfigMaps, ", ")
	case s.File != "":
		return s.File
	default:
		return "the inputs"
	}
}

// tokenInfo is the report's token section. Under policy guard the claims
// and verdict are those of the token on disk (filled by describeDisk).
func (p *pass) tokenInfo() TokenInfo {
	info := p.token.Info()
	info.Policy = p.policy
	if p.account.Name != "" {
		info.ServiceAccount = p.account.Namespace + "/" + p.account.Name
	}
	info.ManagedBy = "calico-cni-sync"
	if p.manage {
		info.ManagedBy = "calico-node"
	}
	return info
}

// describeDisk fills the token section's verdict on the tokens the node's
// files hold (false when any is rejected) and, under policy guard, the
// claims of the token on disk.
func (p *pass) describeDisk(rep *Report, dir cniconf.Dir) {
	if p.want == nil {
		return
	}
	tokens := dir.TokensOnDisk(p.want)
	if len(tokens) == 0 {
		return
	}
	if p.health.Verdict != nil {
		for _, t := range tokens {
			if v := p.health.Verdict(t); v != nil && (rep.Token.Accepted == nil || !*v) {
				rep.Token.Accepted = v
			}
		}
	}
	if p.policy == PolicyGuard {
		c := ParseClaims(tokens[0])
		rep.Token.Subject, rep.Token.ExpiresAt = nil, c.ExpiresAt
		if c.Subject != "" {
			rep.Token.Subject = &c.Subject
		}
	}
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
