package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSELinuxComponent: the selinux Component, added to the base as the
// README says, is accepted by the API server and runs the agent's container
// as spc_t with the rest of its security context unchanged.
func TestSELinuxComponent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := withComponent(t, "selinux")
	deploy(t, ctx, dir)
	ds, err := cp.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-cni-sync", metav1.GetOptions{})
	must(t, err)
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	switch {
	case sc == nil || sc.SELinuxOptions == nil || sc.SELinuxOptions.Type != "spc_t":
		t.Fatalf("security context %+v: want seLinuxOptions.type spc_t", sc)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the container is privileged")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
		t.Errorf("capabilities %+v", sc.Capabilities)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	}
}
