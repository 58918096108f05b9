package status

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Reporter tells the cluster what the agent sees: the Node conditions, Events
// on the Node, and the status file. It remembers what it last said so a
// persisting state is neither re-patched nor re-announced.
type Reporter struct {
	client     kubernetes.Interface
	node       string
	recorder   record.EventRecorder
	statusFile string
	logger     *slog.Logger
	// advice tells what to do about a rejected token, per source.
	advice string

	// Probed says the agent judges the CNI credential by the plugin's own
	// request (--credential-probe): without it CalicoCNICredentialHealthy
	// is Unknown.
	Probed bool

	last      map[corev1.NodeConditionType]corev1.NodeCondition // per type: as last patched or read
	announced map[string]string                                 // per file: the drift already announced
	renderErr string
	rejected  bool
	forbidden string // the refusal already announced
	halted    string // the revision whose halt was announced
	rolled    string // the revision whose rollback was announced
}

// NewReporter starts an event broadcaster for the node. Stop it with the
// returned function.
// Events go through their own client (events), so that a burst of them never
// queues the condition patch behind client-side rate limiting.
func NewReporter(client, events kubernetes.Interface, node, statusFile, advice string, logger *slog.Logger) (*Reporter, func()) {
	// The agent announces each change once, so the correlator's spam
	// filter only needs to stop a runaway, not a busy day of rotations.
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{BurstSize: 100, QPS: 1}))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "calico-cni-sync", Host: node})
	return &Reporter{client: client, node: node, recorder: rec, statusFile: statusFile, logger: logger,
		advice: advice, announced: map[string]string{}}, b.Shutdown
}

// nodeRef names the Node as the kubelet does (UID = name), so the events
// show in kubectl describe node.
func (r *Reporter) nodeRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Node", Name: r.node, UID: types.UID(r.node)}
}

// Announce raises the events one reconcile's outcome calls for. The
// recorder queues them for its own goroutine and client: announcing never
// waits for the API server.
func (r *Reporter) Announce(rep *reconcile.Report, pass *reconcile.Pass, reconcileErr error) {
	r.events(rep, pass, reconcileErr)
}

// Publish says what a report says of the node now: the condition, patched
// only when it changed, and the status file. It may wait on the API server;
// the agent calls it apart from its passes.
func (r *Reporter) Publish(ctx context.Context, rep *reconcile.Report) error {
	// The condition first: it is what the cluster waits for. Both errors
	// stay wrapped: the agent tells an API server that refuses its
	// credential (its own fault) from one that is away.
	patchErr := r.patchConditions(ctx, ConditionFor(rep, r.advice), CredentialConditionFor(rep, r.Probed))
	statusErr := r.writeStatus(rep)
	switch {
	case patchErr != nil && statusErr != nil:
		return fmt.Errorf("report: %w; %w", patchErr, statusErr)
	case patchErr != nil:
		return fmt.Errorf("report: %w", patchErr)
	case statusErr != nil:
		return fmt.Errorf("report: %w", statusErr)
	}
	return nil
}

func (r *Reporter) events(rep *reconcile.Report, pass *reconcile.Pass, reconcileErr error) {
	ref := r.nodeRef()
	var outcomes []reconcile.Outcome
	if pass != nil {
		outcomes = pass.Outcomes
	}
	for _, o := range outcomes {
		f := o.Now
		switch o.Action {
		case cniconf.ActionWritten:
			r.recorder.Eventf(ref, corev1.EventTypeNormal, ReasonConfigWritten, "wrote %s (it was %s)", f.Path, o.Found)
		case cniconf.ActionRotated:
			if rep.Token.Policy == token.PolicyGuard {
				who := "the token on disk"
				if rep.Token.ManagedBy == "calico-node" {
					who = "the token calico-node's token refresher left"
				}
				r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonTokenRepaired,
					"replaced the token in %s: %s was %s; wrote a token from %s", f.Path, who, orUnknown(f.Message), describeToken(rep.Token))
			} else {
				r.recorder.Eventf(ref, corev1.EventTypeNormal, ReasonTokenRotated, "put the current token into %s (%s)", f.Path, describeToken(rep.Token))
			}
		case cniconf.ActionCARepaired:
			// The credential the plugin uses did not work (its CA did not
			// verify the server): a repair, as a token's is.
			r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonTokenRepaired, "replaced the CA in %s: %s", f.Path, orUnknown(f.Message))
		case cniconf.ActionRestored:
			r.recorder.Eventf(ref, corev1.EventTypeNormal, ReasonConfigRestored, "restored %s from the ConfigMap; the hand edit (%s) is backed up at %s",
				f.Path, strings.Join(o.FoundPaths, ", "), o.Backup)
		}
		if o.Found == cniconf.Drifted || f.State == cniconf.Drifted {
			paths := o.FoundPaths
			if f.State == cniconf.Drifted {
				paths = f.ChangedPaths
			}
			key := f.Path + " " + strings.Join(paths, ",") + fmt.Sprintf(" %x", sha256.Sum256([]byte(f.Diff)))
			if r.announced[f.Path] != key {
				r.announced[f.Path] = key
				r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonDriftDetected, "%s was edited on the node (%s): %s",
					f.Path, strings.Join(paths, ", "), restartWarningFor(rep.Source))
			}
		} else {
			delete(r.announced, f.Path)
		}
	}
	var errMsgs []string
	for _, f := range rep.Files {
		if f.State == cniconf.Error {
			errMsgs = append(errMsgs, f.Message)
		}
	}
	if msg := strings.Join(errMsgs, "; "); msg != "" && msg != r.renderErr {
		r.renderErr = msg
		r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonRenderFailed, "cannot compute the CNI config, the files are left as they are: %s", msg)
	} else if msg == "" && reconcileErr == nil {
		r.renderErr = ""
	}
	rejected := tokenRejected(rep)
	if rejected && !r.rejected {
		r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonTokenRejected, "%s", rejectedMessage(rep, r.advice))
	}
	if rep.Token.Accepted != nil || rejected {
		r.rejected = rejected
	}
	if ro := rep.Rollout; ro.Waits() && ro.Phase == rollout.Halted && ro.Revision != r.halted {
		r.halted = ro.Revision
		r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonRolloutHalted, "%s; %s is left as it was", ro.Reason, strings.Join(ro.Held, ", "))
	}
	if ro := rep.Rollout; ro.Waits() && ro.Phase == rollout.RolledBack && ro.Revision != r.rolled {
		r.rolled = ro.Revision
		r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonRolledBack, "%s; %s holds what it held before, and the later waves do not apply it", ro.Reason, strings.Join(ro.Held, ", "))
	}
	switch {
	case credentialForbidden(rep):
		if msg := forbiddenMessage(rep); msg != r.forbidden {
			r.forbidden = msg
			r.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonCNIForbidden, "%s", msg)
		}
	case rep.Token.Verdict != "":
		r.forbidden = ""
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unhealthy"
	}
	return s
}

func describeToken(t token.Info) string {
	s := "source " + t.Source
	if t.Secret != "" {
		s += ", Secret " + t.Secret
	}
	return s
}

// patchConditions patches the Node's status only when one of the agent's
// conditions changed, with the changed ones only, in one patch.
func (r *Reporter) patchConditions(ctx context.Context, cs ...corev1.NodeCondition) error {
	ctx, cancel := context.WithTimeout(ctx, inputs.APITimeout)
	defer cancel()
	if r.last == nil {
		node, err := r.client.CoreV1().Nodes().Get(ctx, r.node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get Node %s: %w", r.node, err)
		}
		r.last = map[corev1.NodeConditionType]corev1.NodeCondition{}
		for _, c := range node.Status.Conditions {
			for _, mine := range cs {
				if c.Type == mine.Type {
					r.last[c.Type] = *c.DeepCopy()
				}
			}
		}
	}
	now := metav1.Now()
	var changed []corev1.NodeCondition
	for _, c := range cs {
		last, ok := r.last[c.Type]
		if ok && last.Status == c.Status && last.Reason == c.Reason && last.Message == c.Message {
			continue
		}
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		if ok && last.Status == c.Status {
			c.LastTransitionTime = last.LastTransitionTime
		}
		changed = append(changed, c)
	}
	if len(changed) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": changed}})
	if err != nil {
		return fmt.Errorf("encode condition: %w", err)
	}
	if _, err := r.client.CoreV1().Nodes().PatchStatus(ctx, r.node, patch); err != nil {
		return fmt.Errorf("patch Node %s condition: %w", r.node, err)
	}
	for _, c := range changed {
		r.last[c.Type] = c
		r.logger.Info("node condition changed", "type", c.Type, "status", c.Status, "reason", c.Reason)
	}
	return nil
}

// writeStatus keeps the status file equal to drift -o json.
func (r *Reporter) writeStatus(rep *reconcile.Report) error {
	return WriteStatusFile(r.statusFile, rep)
}
