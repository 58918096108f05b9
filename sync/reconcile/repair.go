package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// probeToken is what the inputs are rendered with to learn which files hold
// a token and to read the tokens they hold, before any token is asked for.
// No file holds it and it is never written.
const probeToken = "calico-cni-sync-no-token"

// planGuard plans a pass under policy guard, where any healthy token is
// current. The source is asked only when a token must be written
// (token.RepairDue: a file holding the token has none, or one holds an
// unhealthy one); otherwise the files are rendered with the token they hold,
// so a file rewritten for another reason keeps it, and no TokenRequest is
// made that the agent's RBAC may refuse (canal, Calico v3.23-v3.25). A
// repair that cannot be made is refused (refuse), not failed: the rest of
// the pass goes on.
func (r *Reconciler) planGuard(ctx context.Context, p *plan, obs *cniconf.Observation, need token.Need) error {
	probe, err := r.render(p.in, token.Token{Value: probeToken})
	if err != nil {
		return err
	}
	onDisk := obs.Tokens(probe)
	if r.Verdicts != nil {
		// The API server's word on the tokens on disk, asked when a token
		// is new and every period: what policy guard judges by.
		r.refresh(ctx, p.in, onDisk)
	}
	if !token.RepairDue(onDisk, p.health) {
		p.token.Value, p.fromSource = onDisk[0], false
		return r.renderJudged(p)
	}
	tok, why, err := r.replacement(ctx, p, need, onDisk)
	if err != nil {
		return err
	}
	if why != "" {
		return r.refuse(p, onDisk, why)
	}
	p.token, p.fromSource = tok, true
	return r.renderJudged(p)
}

// renderJudged renders the plan's token and installs the health judge: a
// healthy token found in a file is current whatever its bytes.
func (r *Reconciler) renderJudged(p *plan) error {
	want, err := r.render(p.in, p.token)
	if err != nil {
		return err
	}
	want.SetTokenJudge(p.health.Judge)
	p.want = want
	return nil
}

// replacement asks the source for the token a repair writes, and checks it
// first: a repair must not write a token that is dead too. After a
// signing-key rotation the source's cached token is rejected like the one
// on disk, so the source is told (Invalidate) and asked once more; a source
// that cannot renew yet (a TokenRequest within minutes of the last, a token
// Secret the controller has not replaced) gives the same token again. why
// says why there is no replacement ("" when tok is one). The error is for
// a source token unfit for another reason than the API server's word
// (another account, expiring: a --token-file that no retry mends).
func (r *Reconciler) replacement(ctx context.Context, p *plan, need token.Need, onDisk []string) (tok token.Token, why string, err error) {
	if tok, err = r.Token.Token(ctx, need); err != nil {
		return tok, err.Error(), nil
	}
	p.token = token.Token{Source: tok.Source, Secret: tok.Secret} // where the repair comes from, for the report
	if err := fitToRepair(tok, p.health); err != nil {
		return tok, "", err
	}
	if why = r.unusable(ctx, tok, onDisk, p.health); why == "" {
		return tok, "", nil
	}
	inv, ok := r.Token.(token.Invalidator)
	if !ok {
		return tok, why, nil
	}
	inv.Invalidate()
	again, err := r.Token.Token(ctx, need)
	switch {
	case err != nil:
		return tok, why + "; a new one: " + err.Error(), nil
	case again.Value == tok.Value:
		return tok, why + "; the source has no other token yet", nil
	}
	if err := fitToRepair(again, p.health); err != nil {
		return again, "", err
	}
	return again, r.unusable(ctx, again, onDisk, p.health), nil
}

// fitToRepair refuses a source token that is unhealthy for the CNI service
// account for another reason than the API server's verdict: a repair with
// it would loop (a token of another account is replaced at once).
func fitToRepair(tok token.Token, h token.Health) error {
	if ok, why := h.Judge(tok.Value); !ok && !strings.Contains(why, "rejected") {
		return fmt.Errorf("the %s token cannot repair the node's token: it is %s (policy guard)", tok.Origin(), why)
	}
	return nil
}

// unusable says why tok cannot replace the node's token: it is the
// unhealthy token the node already holds, or the API server, asked now,
// rejects it. "" when it can.
func (r *Reconciler) unusable(ctx context.Context, tok token.Token, onDisk []string, h token.Health) string {
	var rejected bool
	if r.Verdicts != nil {
		v := r.Verdicts.CheckNow(ctx, tok.Value)
		rejected = v != nil && !*v
	}
	if slices.Contains(onDisk, tok.Value) {
		if ok, why := h.Judge(tok.Value); !ok {
			return fmt.Sprintf("the %s token is the one the node holds, which is %s", tok.Origin(), why)
		}
	}
	if rejected {
		return fmt.Sprintf("the API server rejects the %s token too", tok.Origin())
	}
	return ""
}

// planUnsourced plans a pass under policy own whose source failed. The
// source's token is the current one, so without it the desired files are
// unknown and the error stands; but when the files hold a token the API
// server rejects, that is a token the agent cannot replace (TokenRejected),
// as under policy guard (refuse). Only where the tokens on disk are checked
// (the agent, drift).
func (r *Reconciler) planUnsourced(ctx context.Context, p *plan, obs *cniconf.Observation, srcErr error) error {
	if !r.checksTokens(p.policy) {
		return srcErr
	}
	probe, err := r.render(p.in, token.Token{Value: probeToken})
	if err != nil {
		return srcErr
	}
	onDisk := obs.Tokens(probe)
	r.refresh(ctx, p.in, onDisk)
	for _, t := range onDisk {
		if v := r.Verdicts.Known(t); v != nil && !*v {
			return r.refuse(p, onDisk, srcErr.Error())
		}
	}
	return srcErr
}

// refuse plans a pass whose token repair cannot be made. The files are
// rendered with a token they hold (a healthy one when there is one), so that
// everything else is still put right and no token is written that the node
// does not hold already, and reported against p.judged, where each file
// holding an unhealthy token shows it, with why it was not replaced. With
// no token on disk there is nothing to render with: the pass fails.
func (r *Reconciler) refuse(p *plan, onDisk []string, why string) error {
	if len(onDisk) == 0 {
		return fmt.Errorf("the node's files hold no token, and none can be written: %s", why)
	}
	keep := onDisk[0]
	for _, t := range onDisk {
		if ok, _ := p.health.Judge(t); ok {
			keep = t
			break
		}
	}
	p.token.Value, p.fromSource = keep, false
	if err := r.renderJudged(p); err != nil {
		return err
	}
	judged, err := r.render(p.in, token.Token{Value: probeToken})
	if err != nil {
		return err
	}
	judged.SetTokenJudge(p.health.Judge)
	p.judged, p.refused = judged, why
	return nil
}

// reported are the files as the pass leaves them: statuses, judged against
// want; after a refused repair, each file judged again against p.judged,
// so that one holding an unhealthy token is StaleToken (or its worse
// state), with why its token was not replaced.
func (p *plan) reported(obs *cniconf.Observation, statuses []cniconf.FileStatus) []cniconf.FileStatus {
	if p.refused == "" {
		return statuses
	}
	out := obs.Check(p.judged)
	for i, f := range p.judged.Files {
		for _, t := range obs.Tokens(&cniconf.Desired{Files: []*cniconf.File{f}}) {
			if ok, _ := p.health.Judge(t); !ok {
				out[i].Message = joinMessages(out[i].Message, "it cannot be replaced: "+p.refused)
				break
			}
		}
	}
	return out
}

func joinMessages(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
