package inputs

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodOf: this node's pod of the DaemonSet, the newest live one; a pod
// being deleted only when it is the only one (the old calico-node still
// runs while it terminates); never another controller's.
func TestPodOf(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "calico-node", Namespace: "kube-system", UID: "ds-1"}}
	yes := true
	at := func(min int) metav1.Time { return metav1.NewTime(time.Date(2026, 1, 1, 0, min, 0, 0, time.UTC)) }
	pod := func(name string, created int, owner string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", CreationTimestamp: at(created),
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: owner, UID: "ds-1", Controller: &yes}}}}
		if deleting {
			now := at(created + 10)
			p.DeletionTimestamp = &now
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pods []*corev1.Pod
		want string
	}{
		{"one live pod", []*corev1.Pod{pod("a", 1, "calico-node", false)}, "a"},
		{"the newest live pod", []*corev1.Pod{pod("a", 1, "calico-node", false), pod("b", 2, "calico-node", false)}, "b"},
		{"a live pod over a terminating one", []*corev1.Pod{pod("old", 1, "calico-node", true), pod("new", 2, "calico-node", false)}, "new"},
		{"the terminating pod when it is the only one", []*corev1.Pod{pod("old", 1, "calico-node", true)}, "old"},
		{"another DaemonSet's pod", []*corev1.Pod{pod("x", 1, "canal", false)}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PodOf(ds, tc.pods)
			if (got == nil && tc.want != "") || (got != nil && got.Name != tc.want) {
				t.Fatalf("PodOf = %v, want %q", got, tc.want)
			}
		})
	}
}
