package inputs

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// TestWatchedAbsentDaemonSetNotAskedAtEveryPass: a candidate DaemonSet
// that does not exist (the operator's on a manifest install) is asked for
// once, not at every pass: passes in quick succession would otherwise each
// spend requests of the client's rate limit on it. After the recheck period
// it is asked again, so one created later is found.
func TestWatchedAbsentDaemonSetNotAskedAtEveryPass(t *testing.T) {
	client := fake.NewClientset()
	const recheck = time.Minute
	c := newWatchedCluster(client, "node-1", installcni.Candidates(), recheck, func(string) {}, nil)
	gets := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "daemonsets" {
				n++
			}
		}
		return n
	}
	for range 5 {
		ds, err := c.DaemonSet(context.Background(), "calico-system", "calico-node")
		if err != nil || ds != nil {
			t.Fatalf("DaemonSet: %v, %v", ds, err)
		}
	}
	if n := gets(); n != 1 {
		t.Fatalf("5 passes in a row asked for the absent DaemonSet %d times, want 1", n)
	}
	c.mu.Lock()
	a := c.absent["calico-system/calico-node"]
	a.at = time.Now().Add(-recheck)
	c.absent["calico-system/calico-node"] = a
	c.mu.Unlock()
	if _, err := c.DaemonSet(context.Background(), "calico-system", "calico-node"); err != nil {
		t.Fatal(err)
	}
	if n := gets(); n != 2 {
		t.Fatalf("after the recheck period the DaemonSet was asked for %d times in all, want 2", n)
	}
}

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
