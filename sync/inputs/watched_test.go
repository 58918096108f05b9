package inputs

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// TestCalicoPodFilter: of the pods on this node in Calico's namespace, only
// those a candidate DaemonSet controls make a pass; kube-proxy's, coredns's
// or a bare pod's do not. A tombstone is judged by the pod it carries.
func TestCalicoPodFilter(t *testing.T) {
	c := &watchedCluster{daemonSets: installcni.Candidates()}
	yes := true
	pod := func(ns, kind, owner string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: owner, Controller: &yes}}
		}
		return p
	}
	for _, tc := range []struct {
		name string
		obj  any
		want bool
	}{
		{"calico-node in kube-system", pod("kube-system", "DaemonSet", "calico-node"), true},
		{"calico-node in calico-system", pod("calico-system", "DaemonSet", "calico-node"), true},
		{"canal", pod("kube-system", "DaemonSet", "canal"), true},
		{"kube-proxy", pod("kube-system", "DaemonSet", "kube-proxy"), false},
		{"coredns", pod("kube-system", "ReplicaSet", "coredns-5d78c9869d"), false},
		{"a bare pod", pod("kube-system", "", ""), false},
		{"canal's name in calico-system", pod("calico-system", "DaemonSet", "canal"), false},
		{"a tombstone of calico-node", cache.DeletedFinalStateUnknown{Key: "kube-system/p", Obj: pod("kube-system", "DaemonSet", "calico-node")}, true},
		{"a tombstone of kube-proxy", cache.DeletedFinalStateUnknown{Key: "kube-system/p", Obj: pod("kube-system", "DaemonSet", "kube-proxy")}, false},
	} {
		if got := c.calicoPod(tc.obj); got != tc.want {
			t.Errorf("%s: calicoPod = %t, want %t", tc.name, got, tc.want)
		}
	}
}
