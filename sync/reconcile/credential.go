package reconcile

import (
	"context"

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
