package inputs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// migrationLabel is the label the tigera operator's manifest-to-operator
// migration puts on each node, pre-operator then migrated.
const migrationLabel = "projectcalico.org/operator-node-migration"

// migrationCluster holds both fixture installs, as the migration leaves
// them: kube-system/calico-node selects pre-operator nodes,
// calico-system/calico-node migrated ones.
type migrationCluster struct {
	ManifestCluster
	node *corev1.Node
	pods map[string]*corev1.Pod // by the DaemonSet's namespace
	// refused are the namespaces whose pods the agent may not list.
	refused map[string]bool
}

func (c migrationCluster) NodePod(_ context.Context, ds *appsv1.DaemonSet, _ string) (*corev1.Pod, error) {
	if c.refused[ds.Namespace] {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("RBAC: no Role in "+ds.Namespace))
	}
	return c.pods[ds.Namespace], nil
}

func (c migrationCluster) Node(context.Context, string) (*corev1.Node, error) { return c.node, nil }

func loadMigration(t *testing.T) *installcni.Manifest {
	t.Helper()
	var all []byte
	for _, f := range []string{"manifest-v3.32.yaml", "operator-v3.32.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "test", "testdata", "fixtures", "installs", f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, data...), "\n---\n"...)
	}
	m, err := installcni.ParseManifest(all)
	if err != nil {
		t.Fatal(err)
	}
	for ns, value := range map[string]string{"kube-system": "pre-operator", "calico-system": "migrated"} {
		ds := m.DaemonSet(ns, "calico-node")
		if ds == nil {
			t.Fatalf("no %s/calico-node in the fixtures", ns)
		}
		ds.Spec.Template.Spec.NodeSelector[migrationLabel] = value
	}
	return m
}

// TestFindDaemonSetMigration: with both DaemonSets of a migration, each
// node reads the one that runs (or would run) there: a pod on the node
// wins, whichever DaemonSet comes first; with no pod, the DaemonSet whose
// nodeSelector matches the node's labels; with neither, an error rather
// than another install's template.
func TestFindDaemonSetMigration(t *testing.T) {
	m := loadMigration(t)
	node := func(value string) *corev1.Node {
		labels := map[string]string{"kubernetes.io/os": "linux"}
		if value != "" {
			labels[migrationLabel] = value
		}
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: labels}}
	}
	yes := true
	pod := func(ns string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "calico-node-" + ns, Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "calico-node", Controller: &yes}}}}
		if deleting {
			now := metav1.NewTime(time.Now())
			p.DeletionTimestamp = &now
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		node    *corev1.Node
		pods    map[string]*corev1.Pod
		want    string // namespace of the DaemonSet, "" for an error
		wantPod bool
		refused []string // namespaces whose pods may not be listed
	}{
		{"pre-operator node with its pod", node("pre-operator"), map[string]*corev1.Pod{"kube-system": pod("kube-system", false)}, "kube-system", true, nil},
		{"migrated node with its pod", node("migrated"), map[string]*corev1.Pod{"calico-system": pod("calico-system", false)}, "calico-system", true, nil},
		{"pre-operator node, no pod yet", node("pre-operator"), nil, "kube-system", false, nil},
		{"migrated node, no pod yet", node("migrated"), nil, "calico-system", false, nil},
		{"relabelled, the old pod still terminating", node("migrated"), map[string]*corev1.Pod{"kube-system": pod("kube-system", true)}, "kube-system", true, nil},
		{"a live pod over a terminating one", node("migrated"),
			map[string]*corev1.Pod{"kube-system": pod("kube-system", true), "calico-system": pod("calico-system", false)}, "calico-system", true, nil},
		{"the pod wins over the labels", node("migrated"), map[string]*corev1.Pod{"kube-system": pod("kube-system", false)}, "kube-system", true, nil},
		{"no label, no pod", node(""), nil, "", false, nil},
		{"no Node", nil, nil, "", false, nil},
		// The base manifests grant pods in kube-system only, the operator
		// overlay in calico-system only: the other is judged by its labels.
		{"calico-system pods refused, migrated node", node("migrated"), nil, "calico-system", false, []string{"calico-system"}},
		{"calico-system pods refused, pre-operator node with its pod", node("pre-operator"),
			map[string]*corev1.Pod{"kube-system": pod("kube-system", false)}, "kube-system", true, []string{"calico-system"}},
		{"kube-system pods refused, pre-operator node", node("pre-operator"),
			map[string]*corev1.Pod{"kube-system": pod("kube-system", false)}, "kube-system", false, []string{"kube-system"}},
		{"kube-system pods refused, migrated node with its pod", node("migrated"),
			map[string]*corev1.Pod{"calico-system": pod("calico-system", false)}, "calico-system", true, []string{"kube-system"}},
		{"both refused, no label", node(""), nil, "", false, []string{"kube-system", "calico-system"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused := map[string]bool{}
			for _, ns := range tc.refused {
				refused[ns] = true
			}
			c := migrationCluster{ManifestCluster: ManifestCluster{Manifest: m}, node: tc.node, pods: tc.pods, refused: refused}
			ds, p, err := FindDaemonSet(context.Background(), c, "", "node-1")
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "--calico-daemonset") {
					t.Fatalf("FindDaemonSet = %v, %v; want an error naming --calico-daemonset", ds, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ds.Namespace != tc.want || (p != nil) != tc.wantPod {
				t.Fatalf("FindDaemonSet = %s/%s, pod %v; want %s/calico-node, pod %t", ds.Namespace, ds.Name, p != nil, tc.want, tc.wantPod)
			}
		})
	}

	// With one DaemonSet, pods it may not list are an error still: the
	// pod's spec, not the template, is what install-cni runs with.
	one := &installcni.Manifest{}
	*one = *m
	one.DaemonSets = []appsv1.DaemonSet{*m.DaemonSet("kube-system", "calico-node")}
	c1 := migrationCluster{ManifestCluster: ManifestCluster{Manifest: one}, node: node("pre-operator"), refused: map[string]bool{"kube-system": true}}
	if _, _, err := FindDaemonSet(context.Background(), c1, "", "node-1"); !apierrors.IsForbidden(err) {
		t.Fatalf("one DaemonSet, its pods refused: FindDaemonSet error %v, want the 403", err)
	}

	// The whole source: the account and the template follow the DaemonSet.
	c := migrationCluster{ManifestCluster: ManifestCluster{Manifest: m}, node: node("pre-operator")}
	in, err := InstallFromDaemonSet(c, "", "node-1", func(string) (string, bool) { return "", false }, "", "")(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in.Source.DaemonSet != "kube-system/calico-node" || in.Namespace != "kube-system" || in.Source.Install != KindManifest {
		t.Fatalf("pre-operator node: inputs from %s (namespace %s, kind %s)", in.Source.DaemonSet, in.Namespace, in.Source.Install)
	}
}

// TestSchedulesOnAffinity: required node affinity counts as the scheduler
// counts it, beside the nodeSelector.
func TestSchedulesOnAffinity(t *testing.T) {
	ds := &appsv1.DaemonSet{}
	ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: migrationLabel, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"migrated"}}},
		}}}}}
	for value, want := range map[string]bool{"pre-operator": true, "migrated": false} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{migrationLabel: value}}}
		if got, err := SchedulesOn(ds, n); err != nil || got != want {
			t.Errorf("%s: SchedulesOn = %t, %v; want %t", value, got, err, want)
		}
	}
}
