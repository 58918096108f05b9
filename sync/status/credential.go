package status

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

// CredentialConditionType is the Node condition that says whether new pods
// can start on the node as far as the CNI credential goes: whether Calico's
// plugin, with the server, CA and token of the node's CNI files, gets its
// first request answered. Unlike CalicoCNIConfigDrift (True for a kept hand
// edit, where pods still start), its status alone is what a scheduling
// gate such as a NodeReadinessRule can act on.
const CredentialConditionType corev1.NodeConditionType = "CalicoCNICredentialHealthy"

// The CalicoCNICredentialHealthy condition's reasons: one per verdict, and
// two for no verdict.
const (
	ReasonCredentialOK          = "CredentialOK"
	ReasonCredentialExpired     = "CredentialExpired"
	ReasonCredentialRejected    = "CredentialRejected"
	ReasonCredentialForbidden   = "CredentialForbidden"
	ReasonCredentialUntrusted   = "CredentialUntrusted"
	ReasonCredentialUnreachable = "CredentialUnreachable"
	// ReasonCredentialNotJudged: no verdict yet (no Calico credential on
	// disk holds the token, or its server has not answered since the agent
	// started).
	ReasonCredentialNotJudged = "CredentialNotJudged"
	// ReasonCredentialNotProbed: --credential-probe=false, the agent does
	// not make the plugin's request.
	ReasonCredentialNotProbed = "CredentialNotProbed"
)

// CredentialConditionFor is the CalicoCNICredentialHealthy condition for a
// report: True when the credential verdict on Calico's token is ok; False
// when it is expired, rejected, forbidden or untrusted (the reason names
// the verdict, the message says why); Unknown when there is no verdict
// (probed false: the probe is off). An unreachable server keeps the last
// verdict (the verdict cache holds it), so Unknown for it means it has
// never answered.
func CredentialConditionFor(rep *reconcile.Report, probed bool) corev1.NodeCondition {
	c := corev1.NodeCondition{Type: CredentialConditionType, Status: corev1.ConditionUnknown}
	if !probed {
		c.Reason = ReasonCredentialNotProbed
		c.Message = "the credential probe is off (--credential-probe=false): the agent does not make the Calico CNI plugin's request, so it does not know whether new pods can start here"
		return c
	}
	why := rep.Token.VerdictMessage
	switch probe.Verdict(rep.Token.Verdict) {
	case probe.OK:
		c.Status, c.Reason = corev1.ConditionTrue, ReasonCredentialOK
		c.Message = "the API server answers the Calico CNI plugin's first request with the server, CA and token of this node's CNI files"
		if why != "" {
			c.Message += ": " + why
		}
	case probe.Expired:
		c.Status, c.Reason = corev1.ConditionFalse, ReasonCredentialExpired
	case probe.Rejected:
		c.Status, c.Reason = corev1.ConditionFalse, ReasonCredentialRejected
	case probe.Forbidden:
		c.Status, c.Reason = corev1.ConditionFalse, ReasonCredentialForbidden
	case probe.Untrusted:
		c.Status, c.Reason = corev1.ConditionFalse, ReasonCredentialUntrusted
	case probe.Unreachable:
		c.Reason = ReasonCredentialUnreachable
		c.Message = "the server of this node's CNI credential has not answered, and there is no earlier verdict"
	default:
		c.Reason = ReasonCredentialNotJudged
		c.Message = "no verdict on this node's CNI credential yet: no Calico credential in the CNI directory holds the token, or its server has not answered since the agent started"
	}
	if c.Status == corev1.ConditionFalse {
		c.Message = "new pods on this node fail: the Calico CNI plugin's credential is " + rep.Token.Verdict
		if why != "" {
			c.Message += ": " + why
		}
	}
	c.Message = cniconf.Redact(c.Message)
	return c
}
