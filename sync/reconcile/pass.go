package reconcile

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// plan is what one reconcile works from: the inputs, the token and the
// policy that judges the token on disk.
type plan struct {
	in *inputs.Install
	// template is the one the inputs gave, when they gave one.
	template string
	want     *cniconf.Desired
	// token is what want is rendered with: the source's, or, under policy
	// guard when no token must be written, one the node's files hold.
	token token.Token
	// fromSource: token is the source's (the source was asked).
	fromSource bool
	source     *inputs.SourceInfo
	account    token.Account
	policy     string
	manage     bool // calico-node refreshes the token itself
	health     token.Health
	// refused says why a token the node needs could not be written: the
	// source refused it, or the API server rejects its token too. The files
	// are then reported against judged.
	refused string
	// judged is the inputs rendered with a token no file holds, so that
	// each file holding an unhealthy token reports it (refused only).
	judged *cniconf.Desired
	// caRepair: the kubeconfig's CA on disk does not verify the server and
	// the desired one does (repairCA); caNote says why no CA repair was
	// marked when the CA on disk does not verify the server.
	caRepair bool
	caNote   string
}

// plan reads the inputs, picks the policy and the token, and renders. Under
// policy guard the source is asked only when a token must be written
// (planGuard); eager asks it anyway (render, which shows what a write from
// the source would be).
func (r *Reconciler) plan(ctx context.Context, install inputs.InstallSource, obs *cniconf.Observation, eager bool) (*plan, error) {
	in, err := install(ctx)
	if err != nil {
		return nil, err
	}
	p := &plan{in: in, source: &in.Source, template: in.Template}
	if in.HostPath != "" && filepath.Clean(in.HostPath) != filepath.Clean(r.Dir.NetDir) {
		return p, fmt.Errorf("DaemonSet %s writes CNI configs to the host directory %s, but this agent writes %s: set --cni-net-dir (and the agent's hostPath mount) to %s", in.Source.DaemonSet, in.HostPath, r.Dir.NetDir, in.HostPath)
	}
	inConf := strings.Contains(in.Template, cniconf.TokenPlaceholder)
	p.account = token.Account{Namespace: in.Namespace, Name: in.CNIServiceAccount}
	if r.ServiceAccount != "" {
		p.account.Name = r.ServiceAccount
	}
	p.policy = token.PolicyFor(r.Policy, in.ManageCNI, inConf)
	p.manage = in.ManageCNI && !inConf
	need := token.Need{Account: p.account, InConf: inConf}
	p.token = token.Token{Source: token.SourceFor(r.TokenSourceName, need)}
	guard := p.policy == token.PolicyGuard
	var srcErr error
	if p.account.Name == "" || eager || !guard {
		srcErr = r.askSource(ctx, p, need)
	}
	p.health = token.Health{Subject: p.account.Subject(), Now: r.Now}
	if r.Verdicts != nil {
		p.health.Verdict = r.Verdicts.Known
	}
	switch {
	case srcErr != nil && !guard && !eager:
		return p, r.planUnsourced(ctx, p, obs, srcErr)
	case srcErr != nil:
		return p, srcErr
	case guard && eager:
		if err := fitToRepair(p.token, p.health); err != nil {
			return p, err
		}
	case guard:
		return p, r.planGuard(ctx, p, obs, need)
	}
	if p.want, err = r.render(in, p.token); err != nil {
		return p, err
	}
	if guard {
		p.want.SetTokenJudge(p.health.Judge)
	}
	return p, nil
}

// askSource takes the source's token into the plan. Offline with nothing
// naming the account, the token says whose it is.
func (r *Reconciler) askSource(ctx context.Context, p *plan, need token.Need) error {
	tok, err := r.Token.Token(ctx, need)
	if err != nil {
		return err
	}
	p.token, p.fromSource = tok, true
	if p.account.Name == "" && tok.Source == token.SourceFile {
		p.account = token.AccountOf(token.ParseClaims(tok.Value).Subject, p.account)
	}
	return nil
}

// render builds the desired files from the inputs and a token.
func (r *Reconciler) render(in *inputs.Install, tok token.Token) (*cniconf.Desired, error) {
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
	ins := &cniconf.Inputs{
		Template: in.Template, Env: in.Env, FromCluster: in.SetByCluster, NodeName: r.NodeName, NetDir: r.Dir.NetDir, KubeconfigDir: in.KubeconfigDir,
		KubeconfigName: r.KubeconfigName, VethMTU: in.VethMTU, EtcdEndpoints: in.EtcdEndpoints, Token: tok.Value, CA: ca,
		TokenFrom: tok.Origin(),
	}
	want, err := cniconf.BuildDesired(ins, confName)
	if err != nil {
		return nil, fmt.Errorf("render the template from %s: %w", describeSource(in.Source), err)
	}
	want.Revision = revisionOf(in)
	return want, nil
}

func describeSource(s inputs.SourceInfo) string {
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
func (p *plan) tokenInfo() token.Info {
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
func (p *plan) describeDisk(r *Reconciler, rep *Report, obs *cniconf.Observation) {
	if p.want == nil {
		return
	}
	tokens := obs.Tokens(p.want)
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
	if r != nil && r.Verdicts != nil {
		// The worst credential verdict among the tokens on disk.
		for _, t := range tokens {
			if f := r.Verdicts.Finding(t); f.Verdict != "" && verdictRank(f.Verdict) < verdictRank(rep.Token.Verdict) {
				rep.Token.Verdict, rep.Token.VerdictMessage = f.Verdict, f.Message
			}
		}
	}
	if p.policy == token.PolicyGuard {
		c := token.ParseClaims(tokens[0])
		rep.Token.Subject, rep.Token.ExpiresAt = nil, c.ExpiresAt
		if c.Subject != "" {
			rep.Token.Subject = &c.Subject
		}
	}
}

// verdictRank orders credential verdicts, the worst first; "" (none) last.
func verdictRank(v string) int {
	switch probe.Verdict(v) {
	case probe.Rejected:
		return 0
	case probe.Expired:
		return 1
	case probe.Untrusted:
		return 2
	case probe.Forbidden:
		return 3
	case probe.OK:
		return 4
	}
	return 5
}
