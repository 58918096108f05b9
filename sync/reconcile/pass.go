package reconcile

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// plan is what one reconcile works from: the inputs, the token and the
// policy that judges the token on disk.
type plan struct {
	in *inputs.Install
	// template is the one the inputs gave, when they gave one.
	template string
	want     *cniconf.Desired
	token    token.Token
	source   *inputs.SourceInfo
	account  token.Account
	policy   string
	manage   bool // calico-node refreshes the token itself
	health   token.Health
}

// plan reads the inputs, picks the token and the policy, and renders. Under
// policy guard it asks the observation for the tokens on disk, the API
// server (through the verdict cache) about them, and token.RepairDue
// whether this pass writes the source's token.
func (r *Reconciler) plan(ctx context.Context, install inputs.InstallSource, obs *cniconf.Observation) (*plan, error) {
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
	tok, err := r.Token.Token(ctx, need)
	p.token = tok
	if err != nil {
		return p, err
	}
	if p.account.Name == "" && tok.Source == token.SourceFile {
		// Offline with nothing naming the account: the token says whose
		// it is.
		p.account = token.AccountOf(token.ParseClaims(tok.Value).Subject, p.account)
	}
	p.health = token.Health{Subject: p.account.Subject(), Now: r.Now}
	if r.Verdicts != nil {
		p.health.Verdict = r.Verdicts.Known
	}
	guard := p.policy == token.PolicyGuard
	if guard {
		if ok, why := p.health.Judge(tok.Value); !ok && !strings.Contains(why, "rejected") {
			return p, fmt.Errorf("the %s token cannot repair the node's token: it is %s (policy guard)", tok.Origin(), why)
		}
	}
	want, err := r.render(in, tok)
	if err != nil {
		return p, err
	}
	if guard && r.Verdicts != nil {
		// The API server's word on the tokens on disk, asked when a token
		// is new and every period: what policy guard judges by. Under
		// policy own the verdict is only reported, and Reconcile asks
		// after it has written.
		onDisk := obs.Tokens(want)
		r.Verdicts.Refresh(ctx, onDisk, false)
		if token.RepairDue(onDisk, p.health) {
			// A repair must not write a token that is dead too: after a
			// signing-key rotation the source's cached token is rejected
			// like the one on disk. Ask once, and take a fresh one if so.
			if v := r.Verdicts.CheckNow(ctx, tok.Value); v != nil && !*v {
				inv, ok := r.Token.(token.Invalidator)
				if !ok {
					return p, fmt.Errorf("the %s token cannot repair the node's token: the API server rejects it too", tok.Origin())
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
	}
	if guard {
		want.SetTokenJudge(p.health.Judge)
	}
	p.want = want
	return p, nil
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
func (p *plan) describeDisk(rep *Report, obs *cniconf.Observation) {
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
	if p.policy == token.PolicyGuard {
		c := token.ParseClaims(tokens[0])
		rep.Token.Subject, rep.Token.ExpiresAt = nil, c.ExpiresAt
		if c.Subject != "" {
			rep.Token.Subject = &c.Subject
		}
	}
}
