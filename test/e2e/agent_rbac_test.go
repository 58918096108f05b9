package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

func getDaemonSet(sa kubernetes.Interface, ns string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.AppsV1().DaemonSets(ns).Get(ctx, "calico-node", metav1.GetOptions{}))
	}
}

// listSandboxFailures lists, or watches, the kubelet's sandbox failures
// in every namespace as the agent does.
func listSandboxFailures(sa kubernetes.Interface, watch bool) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		opts := metav1.ListOptions{FieldSelector: sandbox.Selector}
		if !watch {
			return errOf(sa.CoreV1().Events("").List(ctx, opts))
		}
		w, err := sa.CoreV1().Events("").Watch(ctx, opts)
		if err == nil {
			w.Stop()
		}
		return err
	}
}

func listNodePods(sa kubernetes.Interface, ns, node string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node}))
	}
}

// TestManifestsAgentUnderRBAC: on a manifest install of today's Calico
// (v3.32 in kube-system), the default manifests' agent, with a real token
// of their ServiceAccount and no input flags, does its whole job and nothing
// beyond it: no Secret, no token but calico-cni-plugin's. It rolls the
// ConfigMap change out as shipped, in waves, its node a canary by label (a
// canary applies at once): the gate reads the node's labels, the peers'
// Leases and the kubelet's sandbox failures with the base's grants.
func TestManifestsAgentUnderRBAC(t *testing.T) {
	e := newSystemEnv(t, "calico-config-v3.32.yaml")
	e.installCalico("manifest-v3.32.yaml")
	args := deploy(t, e.ctx, manifestsBase)
	sa := e.asManifestsServiceAccount()
	node, err := cp.Client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
	must(t, err)
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels[canaryLabel] = "true"
	_, err = cp.Client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
	must(t, err)
	a := e.startAgent(append(args, "--rollout=waves", "--rollout-canary-selector", canaryLabel+"=true")...)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || who != "system:serviceaccount:kube-system:calico-cni-plugin" {
		t.Fatalf("the kubeconfig on disk is %q (%v)", who, err)
	}
	before := e.waitCanaryApplied("")
	e.editConfigMap("veth_mtu", "0", "1440")
	e.waitFile(e.net, "10-calico.conflist", "new MTU", func(s string) bool { return strings.Contains(s, `"mtu": 1440,`) })
	e.waitEvent(e.node, "ConfigWritten", "it was Outdated")
	e.waitCanaryApplied(before)
	path := filepath.Join(e.net, "10-calico.conflist")
	must(t, os.WriteFile(path+".edit", []byte(strings.Replace(e.read("10-calico.conflist"), `"mtu": 1440`, `"mtu": 1400`, 1)), 0o600))
	must(t, os.Rename(path+".edit", path))
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "plugins.0.mtu")
	e.waitEvent(e.node, "DriftDetected", "plugins.0.mtu")
	if out := a.Output(); regexp.MustCompile(`(?i)forbidden`).MatchString(out) {
		t.Errorf("the agent was refused something:\n%s", tail(out))
	}

	expectAllowed(t, e.ctx,
		request{"get DaemonSet kube-system/calico-node", getDaemonSet(sa, "kube-system")},
		request{"list this node's pods in kube-system", listNodePods(sa, "kube-system", e.node)},
		request{"request a token for calico-cni-plugin", tokenFor(sa, "kube-system", "calico-cni-plugin")},
		// The health gate of a rollout in waves, the default, judges a
		// change by the kubelet's sandbox failures, which it writes in
		// each pod's namespace (outsideTheJob refuses every other use of
		// Events).
		request{"list sandbox failures in every namespace", listSandboxFailures(sa, false)},
		request{"watch sandbox failures in every namespace", listSandboxFailures(sa, true)})
	// The operator's DaemonSet, absent here, is a not-found, never a 403:
	// discovery looks there first on every install.
	if err := getDaemonSet(sa, "calico-system")(e.ctx); !apierrors.IsNotFound(err) {
		t.Errorf("get DaemonSet calico-system/calico-node: want NotFound, got %v", err)
	}
	// The Lease grant covers kube-system's Leases (RBAC cannot name one not
	// yet created); the lease guard policy keeps the agent to its own.
	e.eventually(30*time.Second, "the agent's Lease", func() error {
		return errOf(cp.Client.CoordinationV1().Leases("kube-system").Get(e.ctx, "calico-cni-sync-"+e.node, metav1.GetOptions{}))
	})
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}}
		if _, err := cp.Client.CoordinationV1().Leases("kube-system").Create(e.ctx, lease, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	expectAllowed(t, e.ctx, request{"update its own Lease", updateLease(sa, "calico-cni-sync-"+e.node)},
		// A rollout in waves reads the peers' states in their Leases.
		request{"list the agents' Leases in kube-system", listLeases(sa, "kube-system")},
		request{"watch the agents' Leases in kube-system", watchLeases(sa, "kube-system")})
	expectForbidden(t, e.ctx, append(outsideTheJob(sa, e.node),
		request{"list Leases in default", listLeases(sa, "default")},
		request{"watch Leases in kube-node-lease", watchLeases(sa, "kube-node-lease")},
		request{"delete its own Lease", func(ctx context.Context) error {
			return sa.CoordinationV1().Leases("kube-system").Delete(ctx, "calico-cni-sync-"+e.node, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		request{"patch its own Lease", func(ctx context.Context) error {
			return errOf(sa.CoordinationV1().Leases("kube-system").Patch(ctx, "calico-cni-sync-"+e.node, types.MergePatchType, []byte(`{}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}))
		}},
		request{"update Lease kube-system/kube-controller-manager", updateLease(sa, "kube-controller-manager")},
		request{"update Lease kube-system/kube-scheduler", updateLease(sa, "kube-scheduler")},
		request{"create a Lease kube-system/x", func(ctx context.Context) error {
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "kube-system"}}
			return errOf(sa.CoordinationV1().Leases("kube-system").Create(ctx, lease, dryRun))
		}},
		request{"get the token Secret", getSecret(sa, pinnedSecret)},
		request{"list Secrets in kube-system", listSecrets(sa, "")},
		request{"list token Secrets in kube-system", listSecrets(sa, "type=kubernetes.io/service-account-token")},
		request{"list pods in calico-system", listNodePods(sa, "calico-system", e.node)})...)
}

// waitCanaryApplied waits until the node's Lease says it applied a
// revision other than not, as the canary (wave 0), and returns it.
func (e *env) waitCanaryApplied(not string) string {
	e.t.Helper()
	var rev string
	e.eventually(30*time.Second, "the canary's rollout state applied", func() error {
		l, err := cp.Client.CoordinationV1().Leases("kube-system").Get(e.ctx, "calico-cni-sync-"+e.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, ok, err := rollout.Decode(l.Annotations[rollout.StateAnnotation])
		switch {
		case err != nil:
			return err
		case !ok || s.Revision == not || s.Wave != 0 || s.Phase != rollout.Applied:
			return fmt.Errorf("rollout state %+v, want applied as wave 0, of a revision other than %q", s, not)
		}
		rev = s.Revision
		return nil
	})
	return rev
}
