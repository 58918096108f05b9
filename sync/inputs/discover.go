package inputs

import (
	"context"
	"fmt"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// existingDaemonSets are the DaemonSets a pass may read: the one named by
// --calico-daemonset (an error when it does not exist), else every one of
// installcni.Candidates that exists, in their order.
func existingDaemonSets(ctx context.Context, c Cluster, named string) ([]*appsv1.DaemonSet, error) {
	cands := installcni.Candidates()
	if named != "" {
		ns, name, ok := strings.Cut(named, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("--calico-daemonset %q: want NAMESPACE/NAME", named)
		}
		cands = []types.NamespacedName{{Namespace: ns, Name: name}}
	}
	var out []*appsv1.DaemonSet
	for _, n := range cands {
		ds, err := c.DaemonSet(ctx, n.Namespace, n.Name)
		if err != nil {
			return nil, err
		}
		if ds != nil {
			out = append(out, ds)
		}
	}
	if named != "" && len(out) == 0 {
		return nil, fmt.Errorf("DaemonSet %s not found (--calico-daemonset)", named)
	}
	return out, nil
}

// FindDaemonSet is the DaemonSet whose install-cni would write this node's
// files, and this node's pod of it (nil: a new pod would get the
// template). The DaemonSet named by --calico-daemonset is the one. Else,
// of the candidates that exist, the first with a live pod on this node
// (else one whose pod is terminating: it still runs here); with
// none, the only one, or when several exist (the tigera operator's
// migration keeps kube-system/calico-node on the nodes labelled
// pre-operator and runs calico-system/calico-node on those labelled
// migrated), the first that would schedule a pod on this node. Nil when no
// candidate exists.
//
// When several exist, a candidate whose pods the agent may not list (403:
// the base manifests grant pods in kube-system only, and the migration
// adds calico-system) is judged without them, by its nodeSelector and node
// affinity alone, rather than failing every pass of every node until a
// Role is added.
func FindDaemonSet(ctx context.Context, c Cluster, named, node string) (*appsv1.DaemonSet, *corev1.Pod, error) {
	all, err := existingDaemonSets(ctx, c, named)
	if err != nil || len(all) == 0 {
		return nil, nil, err
	}
	var dying *appsv1.DaemonSet
	var dyingPod *corev1.Pod
	for _, ds := range all {
		pod, err := c.NodePod(ctx, ds, node)
		if len(all) > 1 {
			unreadPods.note(ds.Namespace, err)
		}
		switch {
		case err != nil && len(all) > 1 && apierrors.IsForbidden(err):
			continue // judged below by whether it would schedule here
		case err != nil:
			return nil, nil, err
		case pod != nil && pod.DeletionTimestamp == nil:
			return ds, pod, nil
		case pod != nil && dying == nil:
			dying, dyingPod = ds, pod
		}
	}
	if dying != nil {
		// The old calico-node still runs here while it terminates.
		return dying, dyingPod, nil
	}
	if len(all) == 1 {
		return all[0], nil, nil
	}
	n, err := c.Node(ctx, node)
	if err != nil {
		return nil, nil, err
	}
	if n == nil {
		return nil, nil, fmt.Errorf("DaemonSets %s exist, none has a pod on node %s, and node %s cannot be read to tell which would run there: name one with --calico-daemonset",
			names(all), node, node)
	}
	for _, ds := range all {
		ok, err := SchedulesOn(ds, n)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			return ds, nil, nil
		}
	}
	return nil, nil, fmt.Errorf("DaemonSets %s exist, but none has a pod on node %s and none would run there (their nodeSelector and node affinity do not match its labels): name one with --calico-daemonset",
		names(all), node)
}

// SchedulesOn reports whether the DaemonSet's pod template selects node:
// its nodeSelector and required node affinity, matched as the scheduler
// and the DaemonSet controller match them. Taints are left out: Calico's
// DaemonSets tolerate every taint.
func SchedulesOn(ds *appsv1.DaemonSet, node *corev1.Node) (bool, error) {
	spec := &ds.Spec.Template.Spec
	ok, err := nodeaffinity.NewRequiredNodeAffinity(spec.NodeSelector, spec.Affinity).Match(node)
	if err != nil {
		return false, fmt.Errorf("DaemonSet %s/%s: node affinity: %w", ds.Namespace, ds.Name, err)
	}
	return ok, nil
}

func names(all []*appsv1.DaemonSet) string {
	s := make([]string, len(all))
	for i, ds := range all {
		s[i] = ds.Namespace + "/" + ds.Name
	}
	return strings.Join(s, " and ")
}

// unreadPods logs, once each time it changes, that the agent may not list
// the pods of a candidate's namespace and judges that DaemonSet without
// them: --once, drift and the agent's passes log it alike, without a line
// at every pass.
var unreadPods = &podAccess{forbidden: map[string]bool{}}

type podAccess struct {
	mu        sync.Mutex
	forbidden map[string]bool
}

// note records the outcome of listing this node's pods in namespace.
func (a *podAccess) note(namespace string, err error) {
	forbidden := err != nil && apierrors.IsForbidden(err)
	if err != nil && !forbidden {
		return // another failure says nothing about the grant
	}
	a.mu.Lock()
	was := a.forbidden[namespace]
	a.forbidden[namespace] = forbidden
	a.mu.Unlock()
	switch {
	case forbidden && !was:
		klog.InfoS("may not list this node's pods in the namespace (no pods Role there): its calico-node DaemonSet is judged by its nodeSelector and node affinity alone",
			"namespace", namespace)
	case !forbidden && was:
		klog.InfoS("may list this node's pods in the namespace again", "namespace", namespace)
	}
}
