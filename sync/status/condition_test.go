package status

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

func TestConditionFor(t *testing.T) {
	f := func(state cniconf.State, paths ...string) cniconf.FileStatus {
		return cniconf.FileStatus{Path: "/etc/cni/net.d/10-calico.conflist", State: state, ChangedPaths: paths}
	}
	no := false
	tests := []struct {
		name       string
		rep        reconcile.Report
		status     corev1.ConditionStatus
		reason     string
		msgContain string
	}{
		{"in sync", reconcile.Report{Files: []cniconf.FileStatus{f(cniconf.InSync)}}, corev1.ConditionFalse, "InSync", "match"},
		{"drifted", reconcile.Report{Files: []cniconf.FileStatus{f(cniconf.InSync), f(cniconf.Drifted, "plugins.0.mtu")}}, corev1.ConditionTrue, "Drifted", "plugins.0.mtu"},
		{"error", reconcile.Report{Files: []cniconf.FileStatus{f(cniconf.Error)}}, corev1.ConditionUnknown, "Error", "Error"},
		{"shadowed", reconcile.Report{Files: []cniconf.FileStatus{f(cniconf.Shadowed)}}, corev1.ConditionTrue, "Shadowed", "calico-node restarts"},
		{"token rejected", reconcile.Report{Files: []cniconf.FileStatus{f(cniconf.InSync)}, Token: token.Info{Accepted: &no}}, corev1.ConditionTrue, "TokenRejected", "delete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ConditionFor(&tc.rep, "delete the Secret")
			if c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.msgContain) {
				t.Fatalf("got %s/%s %q", c.Status, c.Reason, c.Message)
			}
			if tc.status == corev1.ConditionTrue && tc.reason == "Drifted" && !strings.Contains(c.Message, inputs.KindManifest.RestartWarning()) {
				t.Fatal("drift message lacks the restart warning")
			}
		})
	}
}

func TestHealth(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &Health{WedgedAfter: time.Minute, ResyncPeriod: 5 * time.Minute, Now: func() time.Time { return clock }}
	if h.Ready() == nil || h.Live() != nil {
		t.Fatal("fresh: not ready, alive")
	}
	h.Begin()
	clock = clock.Add(2 * time.Minute)
	if h.Live() == nil {
		t.Fatal("a reconcile running for 2m must be wedged")
	}
	h.End(true)
	if h.Ready() != nil || h.Live() != nil {
		t.Fatal("after a good reconcile: ready and alive")
	}
	clock = clock.Add(7 * time.Minute)
	if h.Live() == nil {
		t.Fatal("no reconcile past resync+1m must be wedged")
	}
}
