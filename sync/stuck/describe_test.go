package stuck

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTokenEvidence(t *testing.T) {
	cases := []struct {
		name string
		cond *corev1.NodeCondition
		want string
	}{
		{"none", nil, ""},
		{"rejected", &corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue, Reason: "TokenRejected"}, "condition is TokenRejected"},
		{"forbidden", &corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue, Reason: "CNIForbidden",
			Message: "may not get clusterinformations.crd.projectcalico.org (403 Forbidden); check the ClusterRoleBinding calico-cni-plugin"}, "condition is CNIForbidden: may not get clusterinformations.crd.projectcalico.org (403 Forbidden); check the ClusterRoleBinding calico-cni-plugin"},
		{"stale", &corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue, Reason: "StaleToken"}, "condition is StaleToken"},
		{"in sync", &corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionFalse, Reason: "InSync"}, ""},
		{"drifted", &corev1.NodeCondition{Type: "CalicoCNIConfigDrift", Status: corev1.ConditionTrue, Reason: "Drifted"}, ""},
		{"another condition type", &corev1.NodeCondition{Type: "Ready", Reason: "TokenRejected"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := TokenEvidence("node-1", tc.cond)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || (got != "" && !strings.Contains(got, "node node-1's CalicoCNIConfigDrift")) {
				t.Fatalf("got %q, want it to say %q", got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	mount := `MountVolume.SetUp failed for volume "v-old" : secret "old" not found`
	ev := &SandboxEvent{Reason: ReasonFailedCreatePodSandBox, Message: unauthorized + " eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", Time: now}
	tokenEv := "node node-1's CalicoCNIConfigDrift condition is TokenRejected: the API server rejected the CNI's token on the node"
	forbiddenEv := "node node-1's CalicoCNIConfigDrift condition is CNIForbidden: system:serviceaccount:kube-system:calico-cni-plugin may not get clusterinformations.crd.projectcalico.org (403 Forbidden); check the ClusterRoleBinding calico-cni-plugin"
	cases := []struct {
		name   string
		v      Verdict
		owner  string
		token  string
		secret string
		has    []string
		hasNot []string
		prefix string
	}{
		{name: "missing secret, Deployment", v: Verdict{Why: MissingSecret, Secrets: []string{"a", "old"}, MountMessage: mount}, owner: "Deployment/web", secret: "a,old",
			prefix: "delete the pod: Deployment/web recreates it", has: []string{"kubectl delete pod -n shop web-1", "evidence: the kubelet's FailedMount: " + mount, "still names a,old"}},
		{name: "missing secret, bare", v: Verdict{Why: MissingSecret, Secrets: []string{"old"}}, secret: "old",
			prefix: "bare pod: deleting it loses it; it must be recreated from its manifest", hasNot: []string{"FailedMount"}},
		{name: "unauthorized, owned, token rejected", v: Verdict{Why: CNIUnauthorized, Sandbox: ev}, owner: "Job/nightly", token: tokenEv,
			prefix: "delete the pod: Job/nightly recreates it", has: []string{"FailedCreatePodSandBox (2026-01-02T03:04:05Z): " + unauthorized, "evidence: " + tokenEv, "<token sha256:"},
			hasNot: []string{"eyJhbGciOi"}},
		{name: "unauthorized, owned, RBAC refuses", v: Verdict{Why: CNIUnauthorized, Sandbox: ev}, owner: "Job/nightly", token: forbiddenEv,
			prefix: "the cause is RBAC, not the token", has: []string{"restore the ClusterRoleBinding", "evidence: " + forbiddenEv},
			hasNot: []string{"with the CNI's current token"}},
		{name: "unauthorized, bare", v: Verdict{Why: CNIUnauthorized, Sandbox: ev}, prefix: "bare pod: deleting it loses it"},
		{name: "terminating, owned", v: Verdict{Why: CNIUnauthorized, Terminating: true, Sandbox: killFail}, owner: "Deployment/web",
			prefix: "force-delete the pod", has: []string{"--grace-period=0 --force", "FailedKillPodSandbox"}},
		{name: "terminating, bare", v: Verdict{Why: CNIUnauthorized, Terminating: true, Sandbox: killFail}, prefix: "bare pod, already being deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Describe(pod(), tc.v, tc.owner, tc.token)
			if f.Namespace != "shop" || f.Pod != "web-1" || f.Node != "node-1" || f.Why != tc.v.Why || f.Secret != tc.secret || f.Owner != tc.owner {
				t.Fatalf("finding %+v", f)
			}
			if !strings.HasPrefix(f.Fix, tc.prefix) {
				t.Errorf("fix %q does not start with %q", f.Fix, tc.prefix)
			}
			for _, s := range tc.has {
				if !strings.Contains(f.Fix, s) {
					t.Errorf("fix %q lacks %q", f.Fix, s)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(f.Fix, s) {
					t.Errorf("fix %q has %q", f.Fix, s)
				}
			}
		})
	}
}
