package status

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

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

// TestConditionForUnreplaceableToken: a token the node's files hold that
// the agent could not replace is TokenRejected, whatever the policy, when
// the API server rejects it or it has expired, and the message leads with
// why the repair was refused; the advice for a source the operator mends
// (a Secret) follows it. A refused repair of a token the API server still
// accepts (another account, expiring) is the file's own state.
func TestConditionForUnreplaceableToken(t *testing.T) {
	no, yes := false, true
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	expired := now.Add(-time.Minute)
	stale := cniconf.FileStatus{Path: "/etc/cni/net.d/calico-kubeconfig", State: cniconf.StaleToken, ChangedPaths: []string{"users.0.user.token"},
		Message: "rejected by the API server; it cannot be replaced: forbidden"}
	forbidden := `request a token for service account kube-system/canal: serviceaccounts "canal" is forbidden`
	for _, tc := range []struct {
		name     string
		token    token.Info
		refused  string
		reason   string
		contains []string
		lacks    string
	}{
		{"rejected, refused TokenRequest", token.Info{Source: token.SourceTokenRequest, Policy: token.PolicyGuard, Accepted: &no}, forbidden,
			"TokenRejected", []string{"cannot replace it: " + forbidden, "calico-kubeconfig is StaleToken"}, "delete the Secret"},
		{"rejected under own, refused", token.Info{Source: token.SourceTokenRequest, Policy: token.PolicyOwn, Accepted: &no}, forbidden,
			"TokenRejected", []string{"cannot replace it: " + forbidden}, ""},
		{"rejected, Secret's token rejected too", token.Info{Source: token.SourceSecret, Policy: token.PolicyGuard, Accepted: &no},
			"the API server rejects the Secret s token too", "TokenRejected", []string{"rejects the Secret s token too; delete the Secret"}, ""},
		{"expired, not checked, refused", token.Info{Source: token.SourceTokenRequest, Policy: token.PolicyGuard, ExpiresAt: &expired}, forbidden,
			"TokenRejected", []string{"has expired, and the agent cannot replace it"}, ""},
		{"accepted, refused", token.Info{Source: token.SourceTokenRequest, Policy: token.PolicyGuard, Accepted: &yes}, forbidden,
			"StaleToken", []string{"it cannot be replaced: forbidden"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &reconcile.Report{CheckedAt: now, Files: []cniconf.FileStatus{stale}, Token: tc.token, RepairRefused: tc.refused}
			c := ConditionFor(rep, "delete the Secret")
			if c.Status != corev1.ConditionTrue || c.Reason != tc.reason {
				t.Fatalf("got %s/%s %q, want True/%s", c.Status, c.Reason, c.Message, tc.reason)
			}
			for _, want := range tc.contains {
				if !strings.Contains(c.Message, want) {
					t.Errorf("message %q lacks %q", c.Message, want)
				}
			}
			if tc.lacks != "" && strings.Contains(c.Message, tc.lacks) {
				t.Errorf("message %q has %q", c.Message, tc.lacks)
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

// TestConditionForForbiddenCredential: a token the API server accepts but
// whose plugin request it refuses is CNIForbidden, with the refusal and the
// binding to check; the event is raised once per cause; the metric counts
// Calico's credential as forbidden, and 0 for the verdicts it is not.
func TestConditionForForbiddenCredential(t *testing.T) {
	yes := true
	why := "system:serviceaccount:kube-system:calico-cni-plugin may not get clusterinformations.crd.projectcalico.org (403 Forbidden); check the ClusterRoleBinding calico-cni-plugin"
	rep := reconcile.Report{Files: []cniconf.FileStatus{{Path: "/etc/cni/net.d/calico-kubeconfig", State: cniconf.InSync}},
		Token: token.Info{Accepted: &yes, Verdict: "forbidden", VerdictMessage: why}}
	c := ConditionFor(&rep, "delete the Secret")
	if c.Status != corev1.ConditionTrue || c.Reason != ReasonCNIForbidden || !strings.Contains(c.Message, why) {
		t.Fatalf("got %s/%s %q", c.Status, c.Reason, c.Message)
	}
	if rank(ReasonCNIForbidden) >= rank(string(cniconf.Drifted)) {
		t.Fatal("CNIForbidden does not sort before a drift in report")
	}

	rec := record.NewFakeRecorder(10)
	r := &Reporter{node: "node-1", recorder: rec, announced: map[string]string{}}
	r.Announce(&rep, nil, nil)
	r.Announce(&rep, nil, nil)
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events for one cause, want 1", n)
	}
	if ev := <-rec.Events; !strings.HasPrefix(ev, "Warning "+ReasonCNIForbidden) || !strings.Contains(ev, why) {
		t.Fatalf("event %q", ev)
	}

	m := NewMetrics()
	m.Observe(&rep, nil, nil, time.Time{})
	if v := gauge(t, m, "forbidden"); v != 1 {
		t.Fatalf("credential_verdict{calico,forbidden} = %v", v)
	}
	ok := rep
	ok.Token.Verdict, ok.Token.VerdictMessage = "ok", ""
	m.Observe(&ok, nil, nil, time.Time{})
	if f, o := gauge(t, m, "forbidden"), gauge(t, m, "ok"); f != 0 || o != 1 {
		t.Fatalf("after ok: forbidden %v, ok %v", f, o)
	}
	if c := ConditionFor(&ok, ""); c.Reason != string(cniconf.InSync) {
		t.Fatalf("ok credential: %s", c.Reason)
	}
}

// gauge is credential_verdict{plugin="calico",verdict}, as gathered.
func gauge(t *testing.T, m *Metrics, verdict string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "calico_cni_sync_credential_verdict" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] == "calico" && labels["verdict"] == verdict {
				return s.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no credential_verdict{calico,%s}", verdict)
	return 0
}
