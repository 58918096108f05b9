package status

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// TestCredentialConditionFor: CalicoCNICredentialHealthy is True for an ok
// verdict, False for each verdict that fails the plugin (reason named after
// it, the verdict's message kept), and Unknown with no verdict: not judged
// yet, a server that never answered, or the probe off.
func TestCredentialConditionFor(t *testing.T) {
	const why = "system:serviceaccount:kube-system:calico-cni-plugin may not get clusterinformations.crd.projectcalico.org (403 Forbidden)"
	tests := []struct {
		verdict string
		probed  bool
		status  corev1.ConditionStatus
		reason  string
		message string
	}{
		{"ok", true, corev1.ConditionTrue, "CredentialOK", "answers"},
		{"expired", true, corev1.ConditionFalse, "CredentialExpired", why},
		{"rejected", true, corev1.ConditionFalse, "CredentialRejected", why},
		{"forbidden", true, corev1.ConditionFalse, "CredentialForbidden", why},
		{"untrusted", true, corev1.ConditionFalse, "CredentialUntrusted", why},
		{"unreachable", true, corev1.ConditionUnknown, "CredentialUnreachable", "not answered"},
		{"", true, corev1.ConditionUnknown, "CredentialNotJudged", "no verdict"},
		{"ok", false, corev1.ConditionUnknown, "CredentialNotProbed", "--credential-probe=false"},
		{"", false, corev1.ConditionUnknown, "CredentialNotProbed", "--credential-probe=false"},
	}
	for _, tc := range tests {
		t.Run(tc.verdict+"/"+map[bool]string{true: "probed", false: "off"}[tc.probed], func(t *testing.T) {
			rep := reconcile.Report{Token: token.Info{Verdict: tc.verdict, VerdictMessage: why}}
			c := CredentialConditionFor(&rep, tc.probed)
			if c.Type != "CalicoCNICredentialHealthy" || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Fatalf("got %s %s/%s %q", c.Type, c.Status, c.Reason, c.Message)
			}
		})
	}
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	rep := reconcile.Report{Token: token.Info{Verdict: "rejected", VerdictMessage: "401 for " + tok}}
	if c := CredentialConditionFor(&rep, true); strings.Contains(c.Message, tok) {
		t.Fatalf("the token reached the condition: %q", c.Message)
	}
}

// TestPublishPatchesEachConditionOnlyWhenItChanges: the agent's two
// conditions are patched together at first, then each only when its
// status, reason or message changes; the other keeps its transition time.
func TestPublishPatchesEachConditionOnlyWhenItChanges(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	r := &Reporter{client: client, node: "node-1", statusFile: t.TempDir() + "/status.json",
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), announced: map[string]string{}, Probed: true}
	patches := func() []string {
		var out []string
		for _, a := range client.Actions() {
			if p, ok := a.(k8stesting.PatchAction); ok && a.GetSubresource() == "status" {
				out = append(out, string(p.GetPatch()))
			}
		}
		client.ClearActions()
		return out
	}
	insync := []cniconf.FileStatus{{Path: "/etc/cni/net.d/calico-kubeconfig", State: cniconf.InSync}}
	publish := func(verdict string) {
		t.Helper()
		rep := &reconcile.Report{Files: insync, Token: token.Info{Verdict: verdict}}
		if err := r.Publish(ctx, rep); err != nil {
			t.Fatal(err)
		}
	}
	publish("ok")
	if p := patches(); len(p) != 1 || !strings.Contains(p[0], "CalicoCNIConfigDrift") || !strings.Contains(p[0], "CalicoCNICredentialHealthy") {
		t.Fatalf("first publish: patches %q, want one with both conditions", p)
	}
	publish("ok")
	if p := patches(); len(p) != 0 {
		t.Fatalf("nothing changed, yet patched %q", p)
	}
	publish("forbidden")
	p := patches()
	if len(p) != 1 || !strings.Contains(p[0], "CalicoCNICredentialHealthy") {
		t.Fatalf("forbidden: patches %q", p)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var health *corev1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == CredentialConditionType {
			health = &node.Status.Conditions[i]
		}
	}
	if len(node.Status.Conditions) != 2 || health == nil || health.Status != corev1.ConditionFalse || health.Reason != "CredentialForbidden" {
		t.Fatalf("node conditions %+v", node.Status.Conditions)
	}

	// A restarted agent reads both from the Node and patches nothing new.
	r2 := &Reporter{client: client, node: "node-1", statusFile: r.statusFile, logger: r.logger, announced: map[string]string{}, Probed: true}
	if err := r2.Publish(ctx, &reconcile.Report{Files: insync, Token: token.Info{Verdict: "forbidden"}}); err != nil {
		t.Fatal(err)
	}
	if p := patches(); len(p) != 0 {
		t.Fatalf("a restarted agent re-patched unchanged conditions: %q", p)
	}
}
