package inputs

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// TestWatchedAbsentDaemonSetNotAskedAtEveryPass: a candidate DaemonSet
// that does not exist (the operator's on a manifest install) is asked for
// once, not at every pass: passes in quick succession would otherwise each
// spend requests of the client's rate limit on it. After absentRecheck it
// is asked again, so one created later is found.
func TestWatchedAbsentDaemonSetNotAskedAtEveryPass(t *testing.T) {
	client := fake.NewClientset()
	c := newWatchedCluster(client, "node-1", func(string) {}, nil)
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
	c.absentAt["calico-system/calico-node"] = time.Now().Add(-absentRecheck)
	c.mu.Unlock()
	if _, err := c.DaemonSet(context.Background(), "calico-system", "calico-node"); err != nil {
		t.Fatal(err)
	}
	if n := gets(); n != 2 {
		t.Fatalf("after absentRecheck the DaemonSet was asked for %d times in all, want 2", n)
	}
}
