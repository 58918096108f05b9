package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

const (
	// manifestsNodeReadiness is the opt-in Component under test.
	manifestsNodeReadiness = "../../manifests/components/node-readiness"
	// nodeReadinessCRD is the Node Readiness Controller's CRD as it
	// released it (test/testdata/fixtures/README.md says where from).
	nodeReadinessCRD = "../testdata/fixtures/node-readiness/nodereadinessrules.readiness.node.x-k8s.io.yaml"
)

var nodeReadinessRules = schema.GroupVersionResource{Group: "readiness.node.x-k8s.io", Version: "v1alpha1", Resource: "nodereadinessrules"}

// withComponents writes, in a temporary directory, a kustomization of the
// given resources and components (kustomize refuses absolute paths, so
// both are relative to the new directory).
func withComponents(t *testing.T, resources, components []string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(paths []string) string {
		out := make([]string, len(paths))
		for i, p := range paths {
			abs, err := filepath.Abs(p)
			must(t, err)
			out[i], err = filepath.Rel(dir, abs)
			must(t, err)
		}
		return strings.Join(out, ", ")
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n",
		rel(resources), rel(components))
	must(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	return dir
}

// TestNodeReadinessRuleApplies: with the controller's own CRD installed, the
// Component's NodeReadinessRule is accepted by the API server as written
// (kubectl apply -k), with the CRD's validation in force: a rule whose
// taint the CRD refuses is refused, so the acceptance means something.
func TestNodeReadinessRuleApplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(admin, cp.Config))
	if out, err := kubectl(ctx, admin, "apply", "-f", nodeReadinessCRD); err != nil {
		t.Fatalf("apply the NodeReadinessRule CRD: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = kubectl(context.Background(), admin, "delete", "-f", nodeReadinessCRD, "--wait=false") })
	if out, err := kubectl(ctx, admin, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/nodereadinessrules.readiness.node.x-k8s.io"); err != nil {
		t.Fatalf("the CRD is not established: %v\n%s", err, out)
	}

	dir := withComponents(t, nil, []string{manifestsNodeReadiness})
	e := &env{t: t, ctx: ctx}
	e.eventually(30*time.Second, "kubectl apply -k of the node-readiness Component", func() error {
		if out, err := kubectl(ctx, admin, "apply", "-k", dir); err != nil {
			return errorf("%v: %s", err, out)
		}
		return nil
	})
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	t.Cleanup(func() {
		_ = dyn.Resource(nodeReadinessRules).Delete(context.Background(), "calico-cni-credential", metav1.DeleteOptions{})
	})
	rule, err := dyn.Resource(nodeReadinessRules).Get(ctx, "calico-cni-credential", metav1.GetOptions{})
	must(t, err)
	conds, _, _ := unstructured.NestedSlice(rule.Object, "spec", "conditions")
	if len(conds) != 1 {
		t.Fatalf("spec.conditions = %v, want one", conds)
	}
	cond, _ := conds[0].(map[string]any)
	want := map[string]any{"type": "CalicoCNICredentialHealthy", "requiredStatus": "True", "defaultStatus": "True"}
	for k, v := range want {
		if cond[k] != v {
			t.Errorf("spec.conditions[0].%s = %v, want %v", k, cond[k], v)
		}
	}
	key, _, _ := unstructured.NestedString(rule.Object, "spec", "taint", "key")
	effect, _, _ := unstructured.NestedString(rule.Object, "spec", "taint", "effect")
	mode, _, _ := unstructured.NestedString(rule.Object, "spec", "enforcementMode")
	if key != "readiness.k8s.io/calico-cni-credential" || effect != "NoSchedule" || mode != "continuous" {
		t.Errorf("taint %s:%s, mode %s; want readiness.k8s.io/calico-cni-credential:NoSchedule, continuous", key, effect, mode)
	}

	// The CRD's own validation is live: the same rule with a taint key
	// outside readiness.k8s.io/ is refused.
	bad := rule.DeepCopy()
	bad.SetName("calico-cni-credential-bad-taint")
	bad.SetResourceVersion("")
	bad.SetUID("")
	must(t, unstructured.SetNestedField(bad.Object, "example.com/calico-cni-credential", "spec", "taint", "key"))
	if _, err := dyn.Resource(nodeReadinessRules).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil ||
		!strings.Contains(err.Error(), "taint key must start with 'readiness.k8s.io/'") {
		t.Errorf("a rule with taint key example.com/...: %v, want the CRD's refusal", err)
	}
}

// TestNodeReadinessWithEveryVariant: the Component composes with every
// variant of the manifests and adds exactly its one rule.
func TestNodeReadinessWithEveryVariant(t *testing.T) {
	for _, variant := range []string{manifestsBase, manifestsOperator, manifestsLegacy, manifestsPinned} {
		t.Run(filepath.Base(variant), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
			must(t, cp.WriteKubeconfig(admin, cp.Config))
			plain, err := kubectl(ctx, admin, "kustomize", variant)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", variant, err, plain)
			}
			with, err := kubectl(ctx, admin, "kustomize", withComponents(t, []string{variant}, []string{manifestsNodeReadiness}))
			if err != nil {
				t.Fatalf("kubectl kustomize %s with node-readiness: %v\n%s", variant, err, with)
			}
			if n := strings.Count(with, "\nkind: NodeReadinessRule\n"); n != 1 {
				t.Errorf("%d NodeReadinessRules, want 1", n)
			}
			if got, want := strings.Count(with, "\n---\n"), strings.Count(plain, "\n---\n")+1; got != want {
				t.Errorf("%d documents, want %d: the Component adds one and changes nothing else", got+1, want+1)
			}
		})
	}
}

// ruleTaints says whether the Component's NodeReadinessRule, as written in
// manifests/components/node-readiness/rule.yaml, has the Node Readiness
// Controller taint node: the node matches the rule's nodeSelector and one
// of its conditions is not at requiredStatus (a condition the node lacks
// counts as defaultStatus). No controller runs here; this is its rule as
// its API documents it, read from the file the Component applies.
func ruleTaints(t *testing.T, node *corev1.Node) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(manifestsNodeReadiness, "rule.yaml"))
	must(t, err)
	var rule struct {
		Spec struct {
			Conditions []struct {
				Type           corev1.NodeConditionType `json:"type"`
				RequiredStatus corev1.ConditionStatus   `json:"requiredStatus"`
				DefaultStatus  corev1.ConditionStatus   `json:"defaultStatus"`
			} `json:"conditions"`
			NodeSelector metav1.LabelSelector `json:"nodeSelector"`
		} `json:"spec"`
	}
	must(t, yaml.Unmarshal(raw, &rule))
	sel, err := metav1.LabelSelectorAsSelector(&rule.Spec.NodeSelector)
	must(t, err)
	if len(rule.Spec.Conditions) == 0 || !sel.Matches(labels.Set(node.Labels)) {
		return false
	}
	for _, rc := range rule.Spec.Conditions {
		status := rc.DefaultStatus
		if c := condition(node, rc.Type); c != nil {
			status = c.Status
		}
		if status != rc.RequiredStatus {
			return true
		}
	}
	return false
}

// waitRuleTaints waits until the rule would taint the node (or not).
func (e *env) waitRuleTaints(want bool) {
	e.t.Helper()
	t := e.t.(*testing.T)
	e.eventually(30*time.Second, fmt.Sprintf("the NodeReadinessRule taints %s: %t", e.node, want), func() error {
		n, err := cp.Client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := ruleTaints(t, n); got != want {
			return fmt.Errorf("it would taint: %t; conditions %+v", got, n.Status.Conditions)
		}
		return nil
	})
}
