package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// The kustomizations under test: the base and its overlays.
const (
	manifestsBase     = "../../manifests"
	manifestsOperator = "../../manifests/overlays/operator"
	manifestsLegacy   = "../../manifests/overlays/legacy-secret"
	manifestsPinned   = "../../manifests/overlays/pinned-secret"
	pinnedSecret      = "calico-node-token" // the name overlays/pinned-secret grants
)

// kubectl runs the control plane's kubectl (test/bin) as admin.
func kubectl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	dir := os.Getenv("CONTROLPLANE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// deploy applies a kustomization server-side, as an operator would, deletes
// it at cleanup, and returns the args of the DaemonSet the API server stored.
func deploy(t *testing.T, ctx context.Context, dir string) []string {
	t.Helper()
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(admin, cp.Config))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := kubectl(ctx, admin, "delete", "--ignore-not-found", "--wait", "-k", dir); err != nil {
			t.Errorf("kubectl delete -k %s: %v\n%s", dir, err, out)
		}
	})
	if out, err := kubectl(ctx, admin, "apply", "--server-side", "--field-manager", "e2e", "-k", dir); err != nil {
		t.Fatalf("kubectl apply --server-side -k %s: %v\n%s", dir, err, out)
	}
	ds, err := cp.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-cni-sync", metav1.GetOptions{})
	must(t, err)
	return ds.Spec.Template.Spec.Containers[0].Args
}

// request is one API call made with the agent's identity.
type request struct {
	what string
	do   func(ctx context.Context) error
}

// expectForbidden fails for every request the API server does not refuse
// with 403. Writes are dry runs, so a too-broad grant changes nothing.
func expectForbidden(t *testing.T, ctx context.Context, reqs ...request) {
	t.Helper()
	for _, r := range reqs {
		if err := r.do(ctx); !apierrors.IsForbidden(err) {
			t.Errorf("%s: want Forbidden, got %v", r.what, err)
		}
	}
}

func expectAllowed(t *testing.T, ctx context.Context, reqs ...request) {
	t.Helper()
	for _, r := range reqs {
		if err := r.do(ctx); err != nil {
			t.Errorf("%s: want allowed, got %v", r.what, err)
		}
	}
}

var dryRun = metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

// errOf keeps the error of a client call.
func errOf[T any](_ T, err error) error { return err }

// outsideTheJob is what no variant of the manifests may do.
func outsideTheJob(sa kubernetes.Interface, node string) []request {
	c := sa.CoreV1()
	return []request{
		{"list Secrets in default", func(ctx context.Context) error { return errOf(c.Secrets("default").List(ctx, metav1.ListOptions{})) }},
		{"get a Secret in default", func(ctx context.Context) error { return errOf(c.Secrets("default").Get(ctx, "x", metav1.GetOptions{})) }},
		{"get ConfigMap kube-system/kube-root-ca.crt", func(ctx context.Context) error {
			return errOf(c.ConfigMaps("kube-system").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}))
		}},
		{"list ConfigMaps in kube-system without the name selector", func(ctx context.Context) error {
			return errOf(c.ConfigMaps("kube-system").List(ctx, metav1.ListOptions{}))
		}},
		{"get ConfigMap default/other", func(ctx context.Context) error {
			return errOf(c.ConfigMaps("default").Get(ctx, "other", metav1.GetOptions{}))
		}},
		{"update calico-config", func(ctx context.Context) error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "calico-config", Namespace: "kube-system"}}
			_, err := c.ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"create a Secret in kube-system", func(ctx context.Context) error {
			return errOf(c.Secrets("kube-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, dryRun))
		}},
		{"list Nodes", func(ctx context.Context) error { return errOf(c.Nodes().List(ctx, metav1.ListOptions{})) }},
		{"patch the Node itself (labels)", func(ctx context.Context) error {
			_, err := c.Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`),
				metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"delete a Node", func(ctx context.Context) error {
			return c.Nodes().Delete(ctx, node, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"create an Event in kube-system", func(ctx context.Context) error {
			ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}, InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node}}
			_, err := c.Events("kube-system").Create(ctx, ev, dryRun)
			return err
		}},
		// Events are listed and watched (the kubelet's sandbox failures,
		// for the rollout's health gate), created and patched in default
		// (its own); never read one by one, updated, changed elsewhere or
		// deleted, nor read through events.k8s.io.
		{"get an Event in default", func(ctx context.Context) error { return errOf(c.Events("default").Get(ctx, "x", metav1.GetOptions{})) }},
		{"get an Event in kube-system", func(ctx context.Context) error {
			return errOf(c.Events("kube-system").Get(ctx, "x", metav1.GetOptions{}))
		}},
		{"update an Event in default", func(ctx context.Context) error {
			ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}, InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node}}
			return errOf(c.Events("default").Update(ctx, ev, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}))
		}},
		{"patch an Event in kube-system", func(ctx context.Context) error {
			return errOf(c.Events("kube-system").Patch(ctx, "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}))
		}},
		{"delete an Event in default", func(ctx context.Context) error {
			return c.Events("default").Delete(ctx, "x", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"delete Events in kube-system", func(ctx context.Context) error {
			return c.Events("kube-system").DeleteCollection(ctx, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, metav1.ListOptions{})
		}},
		{"list events.k8s.io Events", func(ctx context.Context) error {
			return errOf(sa.EventsV1().Events("").List(ctx, metav1.ListOptions{}))
		}},
		{"watch events.k8s.io Events", func(ctx context.Context) error {
			w, err := sa.EventsV1().Events("").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"list Pods in default", func(ctx context.Context) error { return errOf(c.Pods("default").List(ctx, metav1.ListOptions{})) }},
		{"get DaemonSet kube-system/kube-proxy", func(ctx context.Context) error {
			return errOf(sa.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}))
		}},
		{"get ServiceAccount kube-system/default", func(ctx context.Context) error {
			return errOf(c.ServiceAccounts("kube-system").Get(ctx, "default", metav1.GetOptions{}))
		}},
		{"request a token for kube-system/calico-cni-sync", tokenFor(sa, "kube-system", "calico-cni-sync")},
		{"request a token for kube-system/calico-node", tokenFor(sa, "kube-system", "calico-node")},
		{"request a token for default/default", tokenFor(sa, "default", "default")},
	}
}

// updateLease is a dry-run update of a kube-system Lease, as the agent's
// renewal is.
func updateLease(sa kubernetes.Interface, name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		lease, err := cp.Client.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return errOf(sa.CoordinationV1().Leases("kube-system").Update(ctx, lease, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}))
	}
}

func listLeases(sa kubernetes.Interface, ns string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: rollout.LeaseSelector}))
	}
}

func watchLeases(sa kubernetes.Interface, ns string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		w, err := sa.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{LabelSelector: rollout.LeaseSelector})
		if err == nil {
			w.Stop()
		}
		return err
	}
}

func tokenFor(sa kubernetes.Interface, ns, name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{}))
	}
}

func getSecret(sa kubernetes.Interface, name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.CoreV1().Secrets("kube-system").Get(ctx, name, metav1.GetOptions{}))
	}
}

func listSecrets(sa kubernetes.Interface, selector string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return errOf(sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{FieldSelector: selector}))
	}
}

// TestManifestsApply: each kustomization is accepted by the API server, and
// a Pod from the DaemonSet's template would be admitted on a node.
func TestManifestsApply(t *testing.T) {
	for _, dir := range []string{manifestsBase, manifestsOperator, manifestsLegacy, manifestsPinned} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if dir == manifestsOperator {
				calicoSystem(t, ctx)
			}
			args := deploy(t, ctx, dir)
			ds, err := cp.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-cni-sync", metav1.GetOptions{})
			must(t, err)
			spec := ds.Spec.Template.Spec
			c := spec.Containers[0]
			sc := c.SecurityContext
			switch {
			case !spec.HostNetwork || spec.DNSPolicy != corev1.DNSDefault:
				t.Error("want hostNetwork with dnsPolicy Default (no dependency on cluster DNS)")
			case len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "":
				t.Errorf("want one toleration of every taint, got %+v", spec.Tolerations)
			case spec.NodeSelector["kubernetes.io/os"] != "linux":
				t.Errorf("want nodeSelector kubernetes.io/os=linux, got %v", spec.NodeSelector)
			case spec.PriorityClassName != "system-node-critical" || spec.ServiceAccountName != "calico-cni-sync":
				t.Error("want priorityClassName system-node-critical and serviceAccountName calico-cni-sync")
			case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("security context %+v", sc)
			case c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
				c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
				t.Error("want liveness /healthz and readiness /readyz")
			case c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero():
				t.Errorf("resources %+v", c.Resources)
			case ds.Spec.UpdateStrategy.RollingUpdate == nil || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1:
				t.Errorf("update strategy %+v", ds.Spec.UpdateStrategy)
			case dir != manifestsPinned && len(args) != 0:
				t.Errorf("want no input flags (the agent discovers its inputs), got %v", args)
			}
			var nodeName bool
			for _, v := range c.Env {
				nodeName = nodeName || (v.Name == "NODE_NAME" && v.ValueFrom != nil && v.ValueFrom.FieldRef.FieldPath == "spec.nodeName")
				if v.Name == "KUBERNETES_SERVICE_HOST" || v.Name == "KUBERNETES_SERVICE_PORT" {
					t.Errorf("%s is set by hand; the kubelet injects it", v.Name)
				}
			}
			if !nodeName {
				t.Error("NODE_NAME does not come from spec.nodeName")
			}
			hostPaths := map[string]bool{}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					hostPaths[v.HostPath.Path] = true
				}
			}
			if !hostPaths["/etc/cni"] || !hostPaths["/var/lib/calico-cni-sync"] {
				t.Errorf("hostPath volumes %v", hostPaths)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "calico-cni-sync-", Namespace: "kube-system"}, Spec: *spec.DeepCopy()}
			pod.Spec.NodeName = "any-node"
			if _, err := cp.Client.CoreV1().Pods("kube-system").Create(ctx, pod, dryRun); err != nil {
				t.Errorf("a Pod from the template is not admitted: %v", err)
			}
		})
	}
}

// TestManifestsOperatorOverlay: on an operator install (calico-system), the
// operator overlay's agent finds calico-node there, reads this node's pods
// there and nowhere else, and writes a token for calico-system's
// calico-cni-plugin.
func TestManifestsOperatorOverlay(t *testing.T) {
	e := newSystemEnv(t, "calico-config-v3.32.yaml")
	calicoSystem(t, e.ctx)
	e.installCalico("operator-v3.32.yaml")
	args := deploy(t, e.ctx, manifestsOperator)
	sa := e.asManifestsServiceAccount()
	e.startAgent(args...)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || who != "system:serviceaccount:calico-system:calico-cni-plugin" {
		t.Fatalf("the kubeconfig on disk is %q (%v)", who, err)
	}
	expectAllowed(t, e.ctx,
		request{"get DaemonSet calico-system/calico-node", getDaemonSet(sa, "calico-system")},
		request{"list this node's pods in calico-system", listNodePods(sa, "calico-system", e.node)})
	expectForbidden(t, e.ctx, append(outsideTheJob(sa, e.node),
		request{"list pods in kube-system", listNodePods(sa, "kube-system", e.node)},
		request{"list Secrets in kube-system", listSecrets(sa, "")})...)
}

// TestManifestsLegacySecretOverlay: the seed's cluster (Calico v2.6, the
// token in the conf from calico-node's token Secret) with the opt-in
// overlay: the agent follows the Secret.
func TestManifestsLegacySecretOverlay(t *testing.T) {
	e := newSystemEnv(t, "calico-config-v2.6-etcd.yaml")
	args := deploy(t, e.ctx, manifestsLegacy)
	sa := e.asManifestsServiceAccount()
	e.startAgent(args...)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if !strings.Contains(e.read("10-calico.conf"), e.secretToken(pinnedSecret)) {
		t.Fatal("the conf does not hold the token Secret's token")
	}
	expectAllowed(t, e.ctx, request{"list token Secrets in kube-system", listSecrets(sa, "type=kubernetes.io/service-account-token")})
	expectForbidden(t, e.ctx, outsideTheJob(sa, e.node)...)
}

// TestManifestsPinnedSecretOverlay: with overlays/pinned-secret the agent
// works from the one Secret it may read; every other Secret is refused.
func TestManifestsPinnedSecretOverlay(t *testing.T) {
	e := newSystemEnv(t, "calico-config-v2.6-etcd.yaml")
	args := deploy(t, e.ctx, manifestsPinned)
	sa := e.asManifestsServiceAccount()
	other := e.populatedTokenSecret("calico-node-token-b0002") // newer: the legacy overlay would follow it
	t.Cleanup(func() {
		_ = cp.Client.CoreV1().Secrets(e.ns).Delete(context.Background(), other, metav1.DeleteOptions{})
	})
	e.startAgent(args...)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if !strings.Contains(e.read("10-calico.conf"), e.secretToken(pinnedSecret)) {
		t.Fatal("the conf does not hold the pinned Secret's token")
	}
	expectAllowed(t, e.ctx,
		request{"get the pinned Secret", getSecret(sa, pinnedSecret)},
		request{"list the pinned Secret by name", listSecrets(sa, "metadata.name="+pinnedSecret)})
	expectForbidden(t, e.ctx, append(outsideTheJob(sa, e.node),
		request{"get another token Secret", getSecret(sa, other)},
		request{"list Secrets in kube-system", listSecrets(sa, "")},
		request{"list token Secrets in kube-system", listSecrets(sa, "type=kubernetes.io/service-account-token")})...)
}
