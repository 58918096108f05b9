package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// credentialProbe judges a token the node's files hold as Calico's plugin
// would meet it: the probe reads the credential that holds it from disk (the
// kubeconfig Calico's conf names, or a v2.x conf's own k8s_api_root and
// k8s_auth_token) and makes the plugin's first request with it. A token no
// Calico credential on disk holds is left to the cache's Check (a review
// with the agent's own server and CA). Nil when the reconciler has no
// prober (offline).
func (r *Reconciler) credentialProbe(in *inputs.Install) token.ProbeFunc {
	if r.Probe == nil || r.Verdicts == nil {
		return nil
	}
	dir := probe.Dir{Path: r.Dir.NetDir}
	if in != nil {
		// The conf names the kubeconfig as install-cni sees the
		// directory (its CNI_NET_DIR), the agent reads it at NetDir.
		dir.HostPath = in.KubeconfigDir
	}
	return func(ctx context.Context, tok string) (token.Finding, bool) {
		targets, err := dir.Discover()
		if err != nil {
			return token.Finding{}, false
		}
		for _, t := range targets {
			if t.Plugin != probe.PluginCalico {
				continue
			}
			cred, err := t.Credential()
			if err != nil || cred.Token != tok {
				continue
			}
			return r.findingOf(ctx, r.Probe.Probe(ctx, cred, t.Request), cred), true
		}
		return token.Finding{}, false
	}
}

// findingOf is what a probe's outcome says of the token. Forbidden is a
// token the API server authenticated: no new token fixes RBAC, so it is
// accepted, and the verdict says what was refused and where to look.
// Untrusted says nothing of the token (the TLS handshake failed before it
// was sent): whether it authenticates is asked with the agent's own server
// and CA. Unreachable says nothing at all: the last finding stands.
func (r *Reconciler) findingOf(ctx context.Context, o probe.Outcome, cred probe.Credential) token.Finding {
	f := token.Finding{Verdict: string(o.Verdict), Message: o.Message}
	switch o.Verdict {
	case probe.OK, probe.Forbidden:
		f.Accepted = ptr(true)
		if o.Verdict == probe.Forbidden {
			f.Message += "; " + probe.Hint(probe.PluginCalico, o.Subject)
		}
	case probe.Expired, probe.Rejected:
		f.Accepted = ptr(false)
	case probe.Untrusted:
		f.Accepted = r.Verdicts.Check(ctx, cred.Token)
	default:
		return token.Finding{}
	}
	f.Message = cniconf.Redact(f.Message, cred.Token)
	return f
}

// refresh asks the verdict cache about the tokens on disk that are due,
// each by Calico's own request where a Calico credential on disk holds it.
func (r *Reconciler) refresh(ctx context.Context, in *inputs.Install, tokens []string) {
	r.Verdicts.RefreshProbed(ctx, tokens, false, r.credentialProbe(in))
}

func ptr[T any](v T) *T { return &v }

// Credentials keeps the verdicts on every credential the CNI directory's
// configs point to (Multus', Whereabouts', istio-cni's, linkerd-cni's,
// Calico's), probed at most once per Period: reported, never written.
// Calico's own is not probed again: its verdict is the token's.
type Credentials struct {
	Period time.Duration
	// Prober makes each plugin's first request.
	Prober probe.Prober

	mu      sync.Mutex
	at      time.Time
	results []probe.Result
}

// credentials are the directory's credentials and their verdicts, probed
// when Period has passed since the last probe.
func (r *Reconciler) credentials(ctx context.Context, in *inputs.Install) []probe.Result {
	c := r.Credentials
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := r.now()
	if !c.at.IsZero() && now.Sub(c.at) < c.Period {
		return c.withCalico(in, r)
	}
	dir := probe.Dir{Path: r.Dir.NetDir}
	if in != nil {
		dir.HostPath = in.KubeconfigDir
	}
	targets, err := dir.Discover()
	if err != nil {
		return c.withCalico(in, r)
	}
	last := map[[2]string]probe.Result{}
	for _, res := range c.results {
		last[[2]string{res.Plugin, res.Path}] = res
	}
	out := make([]probe.Result, 0, len(targets))
	for _, t := range targets {
		res := probe.Result{Path: t.Path, Plugin: t.Plugin}
		cred, err := t.Credential()
		switch {
		case err != nil:
			res.Message = err.Error()
			if errors.Is(err, os.ErrNotExist) {
				res.Message = fmt.Sprintf("%s names %s, which does not exist", t.Conf, t.Path)
			}
		case t.Plugin == probe.PluginCalico:
			res.Subject = token.ParseClaims(cred.Token).Subject
		default:
			o := c.Prober.Probe(ctx, cred, t.Request)
			res.Verdict, res.Message, res.Subject, res.Refused = o.Verdict, o.Message, o.Subject, o.Refused
			if o.Verdict == probe.Forbidden {
				res.Message += "; " + probe.Hint(t.Plugin, o.Subject)
			}
			if prev, ok := last[[2]string{t.Plugin, t.Path}]; ok && o.Verdict == probe.Unreachable && prev.Verdict != "" && prev.Verdict != probe.Unreachable {
				// No answer says nothing of the credential: the last
				// verdict stands, and the message says why it is old.
				res.Verdict, res.Message = prev.Verdict, prev.Message+" (last verdict; now: "+o.Message+")"
			}
		}
		res.Message = cniconf.Redact(res.Message, cred.Token)
		out = append(out, res)
	}
	c.at, c.results = now, out
	return c.withCalico(in, r)
}

// ProbeDue makes the next pass probe every credential again (Calico's by
// the token's verdict), whatever its period says.
func (r *Reconciler) ProbeDue() {
	if r.Verdicts != nil {
		r.Verdicts.Due()
	}
	if c := r.Credentials; c != nil {
		c.mu.Lock()
		c.at = time.Time{}
		c.mu.Unlock()
	}
}

// withCalico is the results with Calico's verdict taken from the token's,
// as the verdict cache holds it now.
func (c *Credentials) withCalico(in *inputs.Install, r *Reconciler) []probe.Result {
	out := slices.Clone(c.results)
	for i, res := range out {
		if res.Plugin != probe.PluginCalico || r.Verdicts == nil || res.Verdict == "" && res.Message != "" {
			continue
		}
		dir := probe.Dir{Path: r.Dir.NetDir}
		if in != nil {
			dir.HostPath = in.KubeconfigDir
		}
		if tok := calicoToken(dir, res.Path); tok != "" {
			f := r.Verdicts.Finding(tok)
			out[i].Verdict, out[i].Message = probe.Verdict(f.Verdict), f.Message
		}
	}
	return out
}

// calicoToken is the token Calico's credential at path holds now.
func calicoToken(dir probe.Dir, path string) string {
	targets, err := dir.Discover()
	if err != nil {
		return ""
	}
	for _, t := range targets {
		if t.Plugin == probe.PluginCalico && t.Path == path {
			if cred, err := t.Credential(); err == nil {
				return cred.Token
			}
		}
	}
	return ""
}
