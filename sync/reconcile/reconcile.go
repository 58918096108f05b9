package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Report is one node's state: drift -o json prints it and the agent keeps it
// in the status file.
type Report struct {
	Node      string               `json:"node"`
	CheckedAt time.Time            `json:"checkedAt"`
	Files     []cniconf.FileStatus `json:"files"`
	Source    *inputs.SourceInfo   `json:"source,omitempty"`
	Token     token.Info           `json:"token"`
	// Credentials are the verdicts on every credential the CNI
	// directory's configs point to: Calico's and other plugins' (read,
	// never written).
	Credentials []probe.Result `json:"credentials,omitempty"`
	// RepairRefused says why the token the node's files need could not be
	// written: the source refused it, or the API server rejects the
	// source's token too. Each file holding the unhealthy token says so in
	// its message; the condition leads with it.
	RepairRefused string `json:"-"`
	// Rollout is where the node stands on the revision of its inputs
	// (the agent only; nil when nothing stages changes or no ConfigMap
	// gives an input).
	Rollout *Rollout `json:"-"`
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
// It is the one road every trigger takes: --once, drift, render and each
// pass of the agent's loop. It is built once, by the command, and never
// written afterwards: a pass keeps what it learns in its Pass.
type Reconciler struct {
	// Dir is the node's CNI directory, with the settle times and the
	// agent's rename hook.
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
	// CAOrigin names where CA comes from (--ca-file, or the agent's own
	// service-account CA), in the message of a CA repair.
	CAOrigin string
	// Install gives what install-cni would get (inputs.Select).
	Install inputs.InstallSource
	// Fresh, when set, gives the same read straight from the API server;
	// it is asked before --on-drift=enforce replaces a hand edit, so that a
	// cache a moment behind never rolls a newer input back (the agent).
	Fresh inputs.InstallSource
	Token token.Source
	// TokenSourceName is reported when the token cannot be read.
	TokenSourceName string
	// ServiceAccount overrides the CNI service account (--service-account).
	ServiceAccount string
	// Policy is own, guard or auto (--token-policy).
	Policy string
	// Verdicts holds the API server's verdicts on tokens; nil offline.
	// They are asked under policy guard, which judges by them, and, when
	// CheckTokens is set (the agent, drift), to report the token on disk.
	Verdicts    *token.VerdictCache
	CheckTokens bool
	// Probe, when set with Verdicts, judges a token Calico's credential on
	// disk holds by the plugin's own first request with that credential
	// (its server, CA and token): its verdict is the token's. Nil: tokens
	// are judged by a review alone.
	Probe *probe.Prober
	// Credentials, when set, reports every credential the CNI
	// directory's configs point to (Report.Credentials); nil: none.
	Credentials *Credentials
	// Now is the node's clock; nil means time.Now.
	Now func() time.Time
	// CAChecks keeps the last check of a candidate CA (repairCA) from one
	// pass to the next; nil: checked at every pass that needs it.
	CAChecks *CAChecks
	// KeepFacts refuses a write that would change a value the last write
	// took from the node's environment (node name, API address, MTU): a
	// hand repair must not rewrite what the node was given (--once without
	// --accept-env-change). The agent follows such changes.
	KeepFacts bool
	// Rollout, when set, stages a ConfigMap-borne change (the agent): a
	// pass that would write one asks it first, and leaves the files as
	// they are while the node waits for its wave. Nil: every change is
	// written at once (--once, drift).
	Rollout Stager
	// Rollbacks, when set with Rollout, keeps what a revision applied in
	// waves replaced, and puts it back when the node turns unhealthy
	// after applying it (the agent). Nil: nothing is kept, and a
	// revision rolled out in waves is applied without a way back.
	Rollbacks *Rollbacks
}

// Mode says how much a reconcile may do.
type Mode int

// Modes.
const (
	ModeSync   Mode = iota // write what the state table says
	ModeDryRun             // say what would be written
	ModeCheck              // only look (drift)
)

// Reconcile computes the desired files and checks or syncs them, looking at
// the disk once (see the package doc for the walk of one pass). An error
// means the desired content could not be computed (every file is then
// reported as Error and left alone) or a write failed. The Pass is what
// the pass decided and did; its Desired is nil when the inputs failed.
func (r *Reconciler) Reconcile(ctx context.Context, mode Mode) (*Report, *Pass, error) {
	rep := &Report{Node: r.NodeName, CheckedAt: r.now().UTC().Truncate(time.Second), Token: token.Info{Source: r.TokenSourceName}}
	obs := r.Dir.Observe()
	p, err := r.plan(ctx, r.Install, obs, false)
	if err == nil && mode == ModeSync && r.Fresh != nil && r.Dir.Policy == cniconf.PolicyEnforce && anyDrifted(obs.Check(p.want)) {
		p, err = r.plan(ctx, r.Fresh, obs, false)
	}
	if err == nil {
		r.repairCA(ctx, p, obs)
	}
	if p != nil {
		rep.Source, rep.Token, rep.RepairRefused = p.source, p.tokenInfo(), p.refused
	}
	if err != nil {
		tok := ""
		if p != nil {
			tok = p.token.Value
		}
		refused := apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
		err = errors.New(cniconf.Redact(err.Error(), tok))
		rep, pass, err := r.failed(rep, err, p)
		if refused {
			pass.OwnFault = err
		}
		return rep, pass, err
	}
	want := p.want
	if r.KeepFacts && mode != ModeCheck {
		if changes := cniconf.ChangedFacts(cniconf.RecordedFacts(r.Dir.StateDir, r.Dir.NetDir), want.Facts); len(changes) > 0 {
			msgs := make([]string, len(changes))
			for i, c := range changes {
				msgs[i] = c.String()
			}
			err := fmt.Errorf("refusing to write: %s; name the node with --node-name and run with the node's environment, or pass --accept-env-change if the change is meant", strings.Join(msgs, "; "))
			return r.failed(rep, err, p)
		}
	}
	if mode != ModeSync && p.policy != token.PolicyGuard && r.checksTokens(p.policy) {
		r.refresh(ctx, p.in, obs.Tokens(want))
	}
	pass := &Pass{Desired: want, Token: p.token, Policy: p.policy, in: p.in, obs: obs}
	switch mode {
	case ModeCheck:
		rep.Files = p.noteCA(p.reported(obs, obs.Check(want)))
		pass.Outcomes = unchanged(rep.Files)
		p.describeDisk(r, rep, obs)
		rep.Credentials = r.credentials(ctx, p.in)
		return rep, pass, fileErrors(rep.Files)
	case ModeDryRun:
		done, err := obs.Sync(want, true)
		pass.Outcomes = make([]Outcome, len(done))
		rep.Files = make([]cniconf.FileStatus, len(done))
		statuses := make([]cniconf.FileStatus, len(done))
		for i, d := range done {
			statuses[i] = d.FileStatus
		}
		statuses = p.noteCA(p.reported(obs, statuses))
		for i, d := range done {
			pass.Outcomes[i] = outcomeOf(d, statuses[i])
			rep.Files[i] = pass.Outcomes[i].Now
		}
		p.describeDisk(r, rep, obs)
		rep.Credentials = r.credentials(ctx, p.in)
		return rep, pass, errors.Join(err, fileErrors(rep.Files))
	}
	keep, staged := r.stage(ctx, p, obs, want)
	done, err := obs.Sync(keep, false)
	done = heldOutcomes(obs, want, keep, done)
	rep.Rollout, pass.Rollout = staged, staged
	if r.checksTokens(p.policy) {
		// A token just written is checked now, so the report says
		// whether it works; after a CA repair, the token on disk is
		// judged again with the CA the file holds now.
		r.Verdicts.RefreshProbed(ctx, obs.Tokens(want), p.caRepair && repairedCA(done), r.credentialProbe(p.in))
	}
	// What is reported is the state after the actions: a rotated token or
	// a rewritten file is InSync now, a kept edit is still Drifted. The
	// observation followed the writes, so nothing is read again.
	after := p.noteCA(p.reported(obs, obs.Check(want)))
	pass.Outcomes = make([]Outcome, len(done))
	rep.Files = make([]cniconf.FileStatus, len(done))
	for i, d := range done {
		pass.Outcomes[i] = outcomeOf(d, after[i])
		rep.Files[i] = pass.Outcomes[i].Now
	}
	if staged != nil {
		sayHeld(rep.Files, staged)
	}
	p.describeDisk(r, rep, obs)
	rep.Credentials = r.credentials(ctx, p.in)
	// Only a token the source gave: under policy guard the files may hold
	// calico-node's, and a refused repair has told the source already.
	pass.OwnTokenRejected = p.fromSource && r.ownTokenRejected(rep, want, obs)
	if err != nil {
		pass.OwnFault = err
		return rep, pass, err
	}
	return rep, pass, fileErrors(rep.Files)
}

// failed reports the files that would be managed as Error, without
// touching them.
func (r *Reconciler) failed(rep *Report, err error, p *plan) (*Report, *Pass, error) {
	rep.Files = r.errorStatuses(err, p)
	return rep, &Pass{Outcomes: unchanged(rep.Files)}, err
}

// ownTokenRejected reports whether the API server rejects the token this
// pass's source gave, and the node's files hold it: a TokenRequest source
// is then told to renew at once.
func (r *Reconciler) ownTokenRejected(rep *Report, want *cniconf.Desired, obs *cniconf.Observation) bool {
	if r.Verdicts == nil || rep.Token.Accepted == nil || *rep.Token.Accepted {
		return false
	}
	for _, t := range obs.Tokens(want) {
		if t == want.Token {
			if v := r.Verdicts.Known(t); v != nil && !*v {
				return true
			}
		}
	}
	return false
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
	return r.Verdicts != nil && (policy == token.PolicyGuard || r.CheckTokens)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Desired reads the inputs and renders the files they call for (render).
func (r *Reconciler) Desired(ctx context.Context) (*cniconf.Desired, token.Token, error) {
	p, err := r.plan(ctx, r.Install, r.Dir.Observe(), true)
	if p == nil {
		return nil, token.Token{}, err
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
func (r *Reconciler) errorStatuses(err error, p *plan) []cniconf.FileStatus {
	template, name := "", r.ConfName
	if p != nil {
		template = p.template
		if name == "" && p.in != nil && p.in.Env != nil {
			// install-cni's CNI_CONF_NAME (canal's 10-canal.conflist), as
			// a pass that renders uses it.
			name, _ = p.in.Env("CNI_CONF_NAME")
		}
	}
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
