package status

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// ConditionType is the Node condition the agent owns.
const ConditionType corev1.NodeConditionType = "CalicoCNIConfigDrift"

// Event reasons. ReasonTokenRejected is a condition reason too; the
// condition's other reasons are the file states.
const (
	ReasonConfigWritten  = "ConfigWritten"
	ReasonTokenRotated   = "TokenRotated"
	ReasonDriftDetected  = "DriftDetected"
	ReasonConfigRestored = "ConfigRestored"
	ReasonRenderFailed   = "RenderFailed"
	ReasonTokenRejected  = "TokenRejected"
	ReasonTokenRepaired  = "TokenRepaired"
	// ReasonCNIForbidden: the API server authenticates the CNI plugin's
	// token but refuses the plugin's request (403). No token fixes RBAC:
	// the agent rewrites nothing for it, and says which permission and
	// which binding.
	ReasonCNIForbidden = "CNIForbidden"
	// ReasonRolloutWaiting (condition, status False): the node holds a
	// ConfigMap-borne change back for its rollout (waiting for its wave,
	// paused, or halted); its files are as they were, and work.
	ReasonRolloutWaiting = "RolloutWaiting"
	// ReasonRolloutHalted (event): the rollout of a revision stopped
	// before this node applied it.
	ReasonRolloutHalted = "RolloutHalted"
	// ReasonRolledBack (event): the node applied a revision, turned
	// unhealthy, and put its previous content back.
	ReasonRolledBack = "RolledBack"
)

// onlyHeld: the files not InSync are exactly those a rollout holds back.
func onlyHeld(rep *reconcile.Report) bool {
	if !rep.Rollout.Waits() {
		return false
	}
	for _, f := range rep.Files {
		if f.State == cniconf.InSync {
			continue
		}
		if f.State != cniconf.Outdated || !slices.Contains(rep.Rollout.Held, f.Path) {
			return false
		}
	}
	return true
}

// rolloutMessage says which revision the node holds back, why, and until
// when.
func rolloutMessage(r *reconcile.Rollout) string {
	var why string
	switch r.Phase {
	case rollout.Paused:
		why = "paused: remove the ConfigMap annotation " + rollout.Annotation + "=paused to resume"
	case rollout.Halted:
		why = "halted"
	case rollout.RolledBack:
		why = "rolled back on this node"
	default:
		why = "waiting for its wave"
	}
	msg := fmt.Sprintf("the ConfigMap change (revision %s) is %s; %s is left as it was, and works", r.Revision, why, strings.Join(r.Held, ", "))
	if r.Reason != "" {
		msg += ": " + r.Reason
	}
	return msg
}

// restartWarningFor is what every drift message must say, for the install
// the inputs came from.
func restartWarningFor(src *inputs.SourceInfo) string {
	if src == nil {
		return inputs.KindManifest.RestartWarning()
	}
	return src.Install.RestartWarning()
}

// ConditionFor is the Node condition for a report: False when every file is
// InSync, Unknown for Error, True otherwise (reason TokenRejected when the API
// server rejects the token the files hold, or when it has expired and the
// agent could not replace it, under either policy).
func ConditionFor(rep *reconcile.Report, advice string) corev1.NodeCondition {
	c := corev1.NodeCondition{Type: ConditionType}
	worst := rep.Worst()
	var problems []string
	for _, f := range rep.Files {
		if f.State == cniconf.InSync {
			continue
		}
		p := fmt.Sprintf("%s is %s", f.Path, f.State)
		if len(f.ChangedPaths) > 0 {
			p += " (changed: " + strings.Join(f.ChangedPaths, ", ") + ")"
		}
		if f.Message != "" {
			p += ": " + f.Message
		}
		problems = append(problems, p)
	}
	switch {
	case worst == cniconf.Error:
		c.Status, c.Reason = corev1.ConditionUnknown, string(cniconf.Error)
		c.Message = strings.Join(problems, "; ")
	case tokenRejected(rep):
		c.Status, c.Reason = corev1.ConditionTrue, ReasonTokenRejected
		c.Message = rejectedMessage(rep, advice)
		if len(problems) > 0 {
			c.Message += "; " + strings.Join(problems, "; ")
		}
	case credentialForbidden(rep):
		c.Status, c.Reason = corev1.ConditionTrue, ReasonCNIForbidden
		c.Message = forbiddenMessage(rep)
		if len(problems) > 0 {
			c.Message += "; " + strings.Join(problems, "; ")
		}
	case onlyHeld(rep):
		c.Status, c.Reason = corev1.ConditionFalse, ReasonRolloutWaiting
		c.Message = rolloutMessage(rep.Rollout)
	case worst == cniconf.InSync:
		c.Status, c.Reason = corev1.ConditionFalse, string(cniconf.InSync)
		c.Message = "the CNI files match the ConfigMap and the current token"
	default:
		c.Status, c.Reason = corev1.ConditionTrue, string(worst)
		c.Message = strings.Join(problems, "; ") + "; " + restartWarningFor(rep.Source)
	}
	c.Message = cniconf.Redact(c.Message)
	return c
}

// tokenRejected: the API server rejects the token the node's files hold, or
// that token has expired and the agent could not replace it.
func tokenRejected(rep *reconcile.Report) bool {
	if rep.Token.Accepted != nil {
		return !*rep.Token.Accepted
	}
	exp := rep.Token.ExpiresAt
	return rep.RepairRefused != "" && exp != nil && !exp.After(rep.CheckedAt)
}

// credentialForbidden: the API server authenticates the token in the
// node's CNI files but refuses Calico's plugin its first request.
func credentialForbidden(rep *reconcile.Report) bool {
	return rep.Token.Verdict == string(probe.Forbidden)
}

// forbiddenMessage names the refused access and the binding to check, and
// says why the agent leaves the token alone.
func forbiddenMessage(rep *reconcile.Report) string {
	return "the API server refuses the Calico CNI plugin's request with the token in this node's CNI files: " +
		rep.Token.VerdictMessage + "; new pods on this node fail until RBAC allows it (no new token fixes this: the agent leaves the files as they are)"
}

// rejectedMessage says what is wrong with the token and what to do: why the
// agent could not replace it, when it tried, and the advice for a source the
// operator mends (a token Secret or file); a TokenRequest the API server
// refuses says why itself.
func rejectedMessage(rep *reconcile.Report, advice string) string {
	if rep.RepairRefused == "" {
		return "the API server rejects the token in this node's CNI files: " + advice
	}
	what := "the API server rejects the token in this node's CNI files"
	if rep.Token.Accepted == nil {
		what = "the token in this node's CNI files has expired"
	}
	msg := what + ", and the agent cannot replace it: " + rep.RepairRefused
	if rep.Token.Source != token.SourceTokenRequest {
		msg += "; " + advice
	}
	return msg
}

// Node states that are no file state: the node has no condition yet, or its
// agent is gone.
const (
	StateUnknown = "Unknown"
	StateStale   = "Stale"
)

// NodeState is the condition read back: one row of report.
type NodeState struct {
	Name    string     `json:"name"`
	State   string     `json:"state"`
	Reason  string     `json:"reason"`
	Message string     `json:"message"`
	Since   *time.Time `json:"since"`
}

// NodeStateOf decodes a Node's condition, the inverse of ConditionFor: the
// state is the condition's reason (a file state, or TokenRejected), InSync
// when its status is False; a Node without the condition is Unknown; a Node
// whose agent is not alive (fresh is false: its Lease is missing or
// stale) is Stale, whatever its condition says.
func NodeStateOf(node *corev1.Node, fresh bool) NodeState {
	row := NodeState{Name: node.Name, State: StateUnknown}
	for _, c := range node.Status.Conditions {
		if c.Type != ConditionType {
			continue
		}
		row.State, row.Reason, row.Message = c.Reason, c.Reason, cniconf.Redact(c.Message)
		if c.Status == corev1.ConditionFalse {
			row.State = string(cniconf.InSync)
		}
		if !c.LastTransitionTime.IsZero() {
			t := c.LastTransitionTime.UTC()
			row.Since = &t
		}
		if !fresh {
			row.State = StateStale
			row.Message = "the agent's Lease is missing or was not renewed within its duration (twice the agent's resync period): the agent is gone, and this condition may be out of date; " + row.Message
		}
	}
	return row
}

// rank orders node states: problems first, most severe first.
func rank(s string) int {
	switch s {
	case string(cniconf.InSync):
		return 100
	case StateUnknown:
		return 50
	case StateStale:
		return 40
	case ReasonTokenRejected, ReasonCNIForbidden:
		return -1
	}
	return cniconf.State(s).Severity()
}

// SortNodeStates puts problems first, most severe first, then by name.
func SortNodeStates(rows []NodeState) {
	sort.SliceStable(rows, func(i, j int) bool {
		if ri, rj := rank(rows[i].State), rank(rows[j].State); ri != rj {
			return ri < rj
		}
		return rows[i].Name < rows[j].Name
	})
}

// TokenEvidence is what the node's condition says about the CNI's token,
// when it says the token was stale or rejected, or that RBAC refuses the
// plugin's request with it (CNIForbidden); "" otherwise (no condition, or
// another state).
func TokenEvidence(node string, cond *corev1.NodeCondition) string {
	if cond == nil || cond.Type != ConditionType {
		return ""
	}
	switch cond.Reason {
	case string(cniconf.StaleToken):
		return fmt.Sprintf("node %s's %s condition is %s: the CNI's token on the node was stale", node, ConditionType, cond.Reason)
	case ReasonTokenRejected:
		return fmt.Sprintf("node %s's %s condition is %s: the API server rejected the CNI's token on the node", node, ConditionType, cond.Reason)
	case ReasonCNIForbidden:
		return ForbiddenEvidence(node, cond.Message)
	}
	return ""
}

// ForbiddenEvidence is TokenEvidence for a node whose condition is
// CNIForbidden: the token works, RBAC refuses the plugin's request (the
// message names the refused access and the ClusterRoleBinding to check).
func ForbiddenEvidence(node, message string) string {
	return fmt.Sprintf("node %s's %s condition is %s: %s", node, ConditionType, ReasonCNIForbidden, cniconf.Redact(message))
}

// ConditionOf is the node's condition, nil when it has none.
func ConditionOf(node *corev1.Node) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if c := &node.Status.Conditions[i]; c.Type == ConditionType {
			return c
		}
	}
	return nil
}
