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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const (
	// manifestsNodeGuard is the opt-in Component under test.
	manifestsNodeGuard = "../../manifests/components/node-guard"
	// nodeGuardDenied starts every refusal of the policy, as the API server
	// words it.
	nodeGuardDenied = "ValidatingAdmissionPolicy 'calico-cni-sync-node-guard' with binding 'calico-cni-sync-node-guard' denied request: "
	// nodeNameExtra is where kube-apiserver puts the node of a token bound
	// to a Pod (ServiceAccountTokenPodNodeInfo).
	nodeNameExtra = "authentication.kubernetes.io/node-name"
)

// withNodeGuard writes, in a temporary directory, the kustomization the
// README tells users to write: a variant of the manifests plus the
// node-guard Component. kustomize refuses absolute paths, so both are
// relative to the new directory.
func withNodeGuard(t *testing.T, variant string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		abs, err := filepath.Abs(p)
		must(t, err)
		r, err := filepath.Rel(dir, abs)
		must(t, err)
		return r
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n",
		rel(variant), rel(manifestsNodeGuard))
	must(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	return dir
}

// TestNodeGuardWithEveryVariant: the Component composes with every variant
// of the manifests and adds exactly its policy and binding.
func TestNodeGuardWithEveryVariant(t *testing.T) {
	for _, variant := range []string{manifestsBase, manifestsOperator, manifestsLegacy, manifestsPinned} {
		t.Run(filepath.Base(variant), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
			must(t, cp.WriteKubeconfig(admin, cp.Config))
			plain, err := kubectl(ctx, admin, "kustomize", variant)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", variant, err, plain)
			}
			guarded, err := kubectl(ctx, admin, "kustomize", withNodeGuard(t, variant))
			if err != nil {
				t.Fatalf("kubectl kustomize %s with node-guard: %v\n%s", variant, err, guarded)
			}
			// One policy and binding more than the variant's own (the
			// base's lease guard).
			for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
				if n, base := strings.Count(guarded, "\nkind: "+kind+"\n"), strings.Count(plain, "\nkind: "+kind+"\n"); n != base+1 {
					t.Errorf("want one %s more than the variant's %d, got %d", kind, base, n)
				}
			}
			if got, want := strings.Count(guarded, "\nkind: "), strings.Count(plain, "\nkind: ")+2; got != want {
				t.Errorf("the Component adds %d objects to the variant's, want 2:\n%s", got-want+2, guarded)
			}
		})
	}
}

// TestNodeGuard: the default manifests with the node-guard Component on the
// real API server. The agent's ServiceAccount, with the token the kubelet
// mounts into its Pod on node A, may patch node A's CalicoCNIConfigDrift
// and CalicoCNICredentialHealthy conditions as the agent does (each alone
// and both in one patch), and nothing else of any Node: not node B,
// not another condition, status field or label of node A, not with a token
// that names no node, not through the Node itself even with more RBAC.
// Other users are not affected.
func TestNodeGuard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	core := cp.Client.CoreV1()

	// The manifests with the Component, applied server-side and deleted at
	// cleanup (policy and binding included): the ServiceAccount and its
	// nodes/status grant come from base/rbac.yaml.
	deploy(t, ctx, withNodeGuard(t, manifestsBase))

	// Two Nodes with the status a kubelet would have reported.
	n := seq.Add(1)
	nodeA, nodeB := fmt.Sprintf("guard-a-%d", n), fmt.Sprintf("guard-b-%d", n)
	initial := map[string]*corev1.Node{}
	for i, name := range []string{nodeA, nodeB} {
		t.Cleanup(func() { _ = core.Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		node, err := core.Nodes().Create(ctx, linuxNode(name), metav1.CreateOptions{})
		must(t, err)
		node.Status = kubeletStatus(fmt.Sprintf("10.0.0.%d", 10+i))
		node, err = core.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		must(t, err)
		initial[name] = node
	}

	// The agent's Pod on node A and the token the kubelet would mount into it.
	agent, err := kubernetes.NewForConfig(cp.ConfigForToken(podToken(t, ctx, nodeA)))
	must(t, err)

	// A policy takes effect once the API server has loaded it (and RBAC
	// once its cache has the ClusterRoleBinding): until then node B's
	// condition is probed with dry runs only, so nothing is written.
	waitRefused(t, ctx, "the policy refuses node B's condition", func(ctx context.Context) error {
		return patchStatus(ctx, agent, nodeB, driftPatch(t, corev1.ConditionFalse, "InSync"), true)
	}, "calico-cni-sync on node "+nodeA+" may write only the status of its own Node, not of Node "+nodeB)

	// Allowed: what the agent does, a strategic merge patch of its
	// condition, set and then changed.
	for _, c := range []struct {
		status corev1.ConditionStatus
		reason string
	}{{corev1.ConditionFalse, "InSync"}, {corev1.ConditionTrue, "Drifted"}} {
		if _, err := agent.CoreV1().Nodes().PatchStatus(ctx, nodeA, driftPatch(t, c.status, c.reason)); err != nil {
			t.Fatalf("the agent on node A sets its condition to %s: %v", c.reason, err)
		}
	}
	for _, p := range [][]byte{
		healthPatch(corev1.ConditionTrue, "CredentialOK"),
		conditionsPatch(t, corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue, Reason: "CNIForbidden"},
			corev1.NodeCondition{Type: "CalicoCNICredentialHealthy", Status: corev1.ConditionFalse, Reason: "CredentialForbidden"}),
	} {
		if _, err := agent.CoreV1().Nodes().PatchStatus(ctx, nodeA, p); err != nil {
			t.Fatalf("the agent on node A patches its conditions %s: %v", p, err)
		}
	}
	a, err := core.Nodes().Get(ctx, nodeA, metav1.GetOptions{})
	must(t, err)
	if c := condition(a, "CalicoCNIConfigDrift"); c == nil || c.Status != corev1.ConditionTrue || c.Reason != "CNIForbidden" {
		t.Fatalf("node A's CalicoCNIConfigDrift is %+v, want True CNIForbidden", c)
	}
	if c := condition(a, "CalicoCNICredentialHealthy"); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "CredentialForbidden" {
		t.Fatalf("node A's CalicoCNICredentialHealthy is %+v, want False CredentialForbidden", c)
	}

	// Refused, each with the policy's own message.
	const (
		ownNode     = "calico-cni-sync on node %s may write only the status of its own Node, not of Node %s"
		noCondition = "calico-cni-sync may change only the CalicoCNIConfigDrift and CalicoCNICredentialHealthy conditions of a Node's status, no other condition (Ready, ...)"
		noField     = "calico-cni-sync may change only the CalicoCNIConfigDrift and CalicoCNICredentialHealthy conditions of a Node's status, no other status field (addresses, capacity, ...)"
		noMetadata  = "calico-cni-sync may not change a Node's metadata (labels, annotations, ...)"
		noNode      = "calico-cni-sync's token names no node (authentication.kubernetes.io/node-name): only the bound token of its Pod on a Node may write Node status"
	)
	unbound, err := cp.TokenFor(ctx, "kube-system", "calico-cni-sync", time.Hour)
	must(t, err)
	withoutNode, err := kubernetes.NewForConfig(cp.ConfigForToken(unbound))
	must(t, err)
	for _, r := range []struct {
		what   string
		client kubernetes.Interface
		node   string
		patch  []byte
		want   string
	}{
		{"node B's CalicoCNIConfigDrift", agent, nodeB, driftPatch(t, corev1.ConditionTrue, "Drifted"), fmt.Sprintf(ownNode, nodeA, nodeB)},
		{"node B's CalicoCNICredentialHealthy", agent, nodeB, healthPatch(corev1.ConditionFalse, "CredentialRejected"), fmt.Sprintf(ownNode, nodeA, nodeB)},
		{"node A's CalicoCNICredentialHealthy and Ready in one patch", agent, nodeA, conditionsPatch(t,
			corev1.NodeCondition{Type: "CalicoCNICredentialHealthy", Status: corev1.ConditionTrue, Reason: "CredentialOK"},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady"}), noCondition},
		{"a condition of another name on node A", agent, nodeA, conditionsPatch(t,
			corev1.NodeCondition{Type: "CalicoCNICredentialHealthyX", Status: corev1.ConditionTrue, Reason: "CredentialOK"}), noCondition},
		{"node A's Ready", agent, nodeA, conditionsPatch(t, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
			Reason: "KubeletNotReady", Message: "forged"}), noCondition},
		{"node A's CalicoCNIConfigDrift and Ready in one patch", agent, nodeA, conditionsPatch(t,
			corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionFalse, Reason: "InSync"},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady"}), noCondition},
		{"removing node A's Ready", agent, nodeA, []byte(`{"status":{"conditions":[{"type":"Ready","$patch":"delete"}]}}`), noCondition},
		{"node A's status.capacity", agent, nodeA, []byte(`{"status":{"capacity":{"cpu":"64"}}}`), noField},
		{"node A's status.addresses", agent, nodeA, []byte(`{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}`), noField},
		{"node A's labels, through its status", agent, nodeA, []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`), noMetadata},
		{"node A's CalicoCNIConfigDrift with a token bound to no Pod", withoutNode, nodeA, driftPatch(t, corev1.ConditionFalse, "InSync"), noNode},
	} {
		err := patchStatus(ctx, r.client, r.node, r.patch, false)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), nodeGuardDenied+r.want) {
			t.Errorf("patch %s: want 403 %q, got %v", r.what, r.want, err)
		}
	}

	// Refused even with RBAC that would allow it: the Node itself, which
	// the manifests never grant (a test-only grant, removed at cleanup).
	grantNodePatch(t, ctx)
	patchNode := func(dryRun bool) func(context.Context) error {
		return func(ctx context.Context) error {
			opts := metav1.PatchOptions{}
			if dryRun {
				opts.DryRun = []string{metav1.DryRunAll}
			}
			_, err := agent.CoreV1().Nodes().Patch(ctx, nodeA, types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`), opts)
			return err
		}
	}
	const notTheNode = "calico-cni-sync may write a Node only through its status subresource"
	waitRefused(t, ctx, "the policy refuses patching node A itself", patchNode(true), notTheNode)
	if err := patchNode(false)(ctx); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), nodeGuardDenied+notTheNode) {
		t.Errorf("patch node A's labels with RBAC allowing it: want 403 %q, got %v", notTheNode, err)
	}

	// Nothing refused was written: node B is as its kubelet left it, node A
	// too but for the agent's condition.
	for _, name := range []string{nodeA, nodeB} {
		got, err := core.Nodes().Get(ctx, name, metav1.GetOptions{})
		must(t, err)
		got.Status.Conditions = without(without(got.Status.Conditions, "CalicoCNIConfigDrift"), "CalicoCNICredentialHealthy")
		if want := initial[name]; !equality.Semantic.DeepEqual(got.Status, want.Status) || !equality.Semantic.DeepEqual(got.Labels, want.Labels) {
			t.Errorf("node %s changed:\nstatus %+v\nlabels %v\nwant\nstatus %+v\nlabels %v", name, got.Status, got.Labels, want.Status, want.Labels)
		}
	}
	if b, err := core.Nodes().Get(ctx, nodeB, metav1.GetOptions{}); err != nil || condition(b, "CalicoCNIConfigDrift") != nil ||
		condition(b, "CalicoCNICredentialHealthy") != nil {
		t.Errorf("node B has a condition of the agent's (%v)", err)
	}

	// Other users are not matched: an admin changes node B's Ready, and its
	// labels through the status subresource. That the status subresource
	// carries metadata is why the policy compares the agent's metadata too.
	must(t, patchStatus(ctx, cp.Client, nodeB, conditionsPatch(t, corev1.NodeCondition{Type: corev1.NodeReady,
		Status: corev1.ConditionFalse, Reason: "KubeletNotReady"}), false))
	must(t, patchStatus(ctx, cp.Client, nodeB, []byte(`{"metadata":{"labels":{"guard-test":"admin"}}}`), false))
	b, err := core.Nodes().Get(ctx, nodeB, metav1.GetOptions{})
	must(t, err)
	if c := condition(b, corev1.NodeReady); c == nil || c.Status != corev1.ConditionFalse || b.Labels["guard-test"] != "admin" {
		t.Errorf("the admin's status patches of node B were not applied: Ready %+v, labels %v", c, b.Labels)
	}
}

// TestNodeGuardAgent: with the node-guard Component, the agent of the
// default manifests, with its Pod's token, reports its condition as before:
// InSync, then Drifted after a hand edit, and its CalicoCNICredentialHealthy
// condition (True: the install's CNI account has Calico's RBAC), and is
// refused nothing.
func TestNodeGuardAgent(t *testing.T) {
	e := newSystemEnv(t, "calico-config-v3.32.yaml")
	e.installCalico("manifest-v3.32.yaml")
	args := deploy(t, e.ctx, withNodeGuard(t, manifestsBase))
	tok := podToken(t, e.ctx, e.node)
	e.kubeconfig = filepath.Join(e.dir, "calico-cni-sync.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, cp.ConfigForToken(tok)))
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(t, err)
	// The policy is in effect before the agent's first patch.
	waitRefused(t, e.ctx, "the policy refuses the node's Ready", func(ctx context.Context) error {
		return patchStatus(ctx, sa, e.node, conditionsPatch(t, corev1.NodeCondition{Type: corev1.NodeReady,
			Status: corev1.ConditionFalse, Reason: "KubeletNotReady"}), true)
	}, "calico-cni-sync may change only the CalicoCNIConfigDrift and CalicoCNICredentialHealthy conditions of a Node's status, no other condition (Ready, ...)")

	a := e.startAgent(args...)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitHealthy(e.node, corev1.ConditionTrue, "CredentialOK")
	path, conf := filepath.Join(e.net, "10-calico.conflist"), e.read("10-calico.conflist")
	if !strings.Contains(conf, `"mtu": 0`) {
		t.Fatalf("the conflist has no \"mtu\": 0 to edit:\n%s", conf)
	}
	must(t, os.WriteFile(path+".edit", []byte(strings.Replace(conf, `"mtu": 0`, `"mtu": 1400`, 1)), 0o600))
	must(t, os.Rename(path+".edit", path))
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "plugins.0.mtu")
	if out := a.Output(); regexp.MustCompile(`(?i)forbidden|denied request`).MatchString(out) {
		t.Errorf("the agent was refused something:\n%s", tail(out))
	}
}
