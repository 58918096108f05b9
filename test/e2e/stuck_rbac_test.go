package e2e

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	manifestsReport        = "../../manifests/report"
	manifestsReportSecrets = "../../manifests/report/secrets"
	manifestsReportFix     = "../../manifests/report/fix"
)

// access is one request a ServiceAccount may or may not make.
type access struct{ verb, group, resource, subresource, namespace string }

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	return a.verb + " " + r + " in " + cmpOr(a.namespace, "all namespaces")
}

// reportReads is every request report and report --stuck make but
// listing Secrets.
var reportReads = []access{
	{"list", "", "nodes", "", ""}, {"get", "", "nodes", "", ""},
	{"list", "", "pods", "", ""}, {"get", "", "pods", "", "shop"},
	{"list", "", "events", "", ""},
	{"get", "apps", "replicasets", "", "shop"},
	{"list", "coordination.k8s.io", "leases", "", "kube-system"},
}

// reportListsSecrets is what manifests/report/secrets adds: report --stuck lists
// the names of the Secrets the waiting pods mount (the metadata-only API),
// in every namespace and in one.
var reportListsSecrets = []access{{"list", "", "secrets", "", ""}, {"list", "", "secrets", "", "shop"}}

// forbiddenToReport is what neither variant may do: read a Secret by name,
// watch anything, or write anything (but delete pods, the fix variant's).
func forbiddenToReport() []access {
	out := []access{{"get", "", "secrets", "", "kube-system"}, {"watch", "", "secrets", "", ""}, {"watch", "", "pods", "", ""}}
	resources := []access{{group: "", resource: "pods"}, {group: "", resource: "pods", subresource: "eviction"}, {group: "", resource: "nodes"},
		{group: "", resource: "nodes", subresource: "status"}, {group: "", resource: "secrets"}, {group: "", resource: "configmaps"},
		{group: "", resource: "events"}, {group: "", resource: "serviceaccounts"}, {group: "", resource: "serviceaccounts", subresource: "token"},
		{group: "apps", resource: "replicasets"}, {group: "apps", resource: "deployments"}, {group: "apps", resource: "daemonsets"},
		{group: "batch", resource: "jobs"}, {group: "coordination.k8s.io", resource: "leases"},
		{group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"}}
	for _, r := range resources {
		for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
			if r.resource == "pods" && r.subresource == "" && verb == "delete" {
				continue
			}
			r.verb = verb
			out = append(out, r)
		}
	}
	return out
}

var deletePods = access{"delete", "", "pods", "", "shop"}

// applyRendered renders a kustomization with kubectl kustomize and applies
// it as an admin would; it is deleted at cleanup.
func applyRendered(t *testing.T, e *env, dir string) {
	t.Helper()
	rendered, err := kubectl(e.ctx, e.kubeconfig, "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, rendered)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	must(t, os.WriteFile(path, []byte(rendered), 0o600))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := kubectl(ctx, e.kubeconfig, "delete", "--ignore-not-found", "-f", path); err != nil {
			t.Errorf("kubectl delete -f %s: %v\n%s", dir, err, out)
		}
	})
	if out, err := kubectl(e.ctx, e.kubeconfig, "apply", "-f", path); err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", dir, err, out)
	}
}

// can asks the API server whether the client may make the request.
func can(t *testing.T, ctx context.Context, c kubernetes.Interface, a access) bool {
	t.Helper()
	r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace}}}, metav1.CreateOptions{})
	must(t, err)
	return r.Status.Allowed
}

// checkAccess checks the account may make every request of allowed and none
// of denied.
func checkAccess(t *testing.T, ctx context.Context, c kubernetes.Interface, allowed, denied []access) {
	t.Helper()
	for _, a := range allowed {
		if !can(t, ctx, c, a) {
			t.Errorf("report's account may not %s", a)
		}
	}
	for _, a := range denied {
		if can(t, ctx, c, a) {
			t.Errorf("report's account may %s", a)
		}
	}
}

// kubeletMountFailed records the event the kubelet records when a pod's
// Secret volume cannot be set up because the Secret does not exist: the
// volume manager's error for the volume, with the Secret manager's
// NotFound (resource "secret").
func (e *env) kubeletMountFailed(p *corev1.Pod, volume, secret string) string {
	e.t.Helper()
	msg := `MountVolume.SetUp failed for volume "` + volume + `" : secret "` + secret + `" not found`
	e.podEvent(p, "FailedMount", msg, time.Now())
	return msg
}

// TestStuckRBAC: report --stuck as manifests/report's ServiceAccount, with
// the RBAC the manifests grant, on the real API server. The read-only
// variant reads everything report needs, no Secret, and can delete
// nothing: its list of Secrets is refused, and report --stuck finds the
// missing Secret from the kubelet's FailedMount events. The secrets variant
// adds listing Secrets, and then a pod without such an event is found too.
// The fix variant adds deleting pods, and --fix works with it.
func TestStuckRBAC(t *testing.T) {
	e := newStuckEnv(t)
	web := e.deploymentRS("web")
	secrets := e.client.CoreV1().Secrets(e.ns)
	_, err := secrets.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: oldToken}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	must(t, err)
	must(t, secrets.Delete(e.ctx, oldToken, metav1.DeleteOptions{}))
	e.setCondition(e.node, corev1.ConditionTrue, "TokenRejected", "the API server rejects the token in calico-kubeconfig", time.Now())
	vol := e.newPod("web-vol", e.node, &web, secretVolume(oldToken, false, false))
	volMount := e.kubeletMountFailed(vol, "token-"+oldToken, oldToken)
	bare := e.newPod("bare-secret", e.node, nil, secretVolume(oldToken, false, true))
	e.kubeletMountFailed(bare, "token-"+oldToken, oldToken)
	// A pod whose FailedMount event is gone (events live an hour): only a
	// list of the Secrets finds it.
	e.newPod("web-noevent", e.node, &web, secretVolume(oldToken, false, false))
	cc := e.newPod("web-cc", e.node, &web)
	e.podEvent(cc, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now())
	fromEvents := []stuckRow{
		{Namespace: e.ns, Pod: "bare-secret", Node: e.node, Why: "missingSecret", Secret: oldToken},
		{Namespace: e.ns, Pod: "web-cc", Node: e.node, Why: "cniUnauthorized", Owner: "Deployment/web"},
		{Namespace: e.ns, Pod: "web-vol", Node: e.node, Why: "missingSecret", Secret: oldToken, Owner: "Deployment/web"},
	}
	want := append(append([]stuckRow{}, fromEvents[:2]...),
		stuckRow{Namespace: e.ns, Pod: "web-noevent", Node: e.node, Why: "missingSecret", Secret: oldToken, Owner: "Deployment/web"}, fromEvents[2])
	fixes := map[string][]string{
		"web-cc":  {"delete the pod: Deployment/web recreates it", "condition is TokenRejected"},
		"web-vol": {"delete the pod: Deployment/web recreates it", "evidence: the kubelet's FailedMount: " + volMount},
	}

	applyRendered(t, e, manifestsReport)
	tok, err := cp.TokenFor(e.ctx, "kube-system", "calico-cni-sync-report", time.Hour)
	must(t, err)
	readonly := filepath.Join(e.dir, "report.kubeconfig")
	must(t, cp.WriteKubeconfig(readonly, cp.ConfigForToken(tok)))
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(t, err)
	e.eventually(30*time.Second, "RBAC of manifests/report in effect", func() error {
		if !can(t, e.ctx, sa, reportReads[0]) {
			return errorf("not yet")
		}
		return nil
	})
	checkAccess(t, e.ctx, sa, reportReads, append(append(forbiddenToReport(), deletePods), reportListsSecrets...))

	code, rows, out := e.stuckJSON(readonly)
	if code != 1 {
		t.Fatalf("report --stuck as the read-only account: exit %d\n%s", code, out)
	}
	checkRows(t, out, rows, fromEvents, fixes)
	if !strings.Contains(out, "note: listing Secrets is not granted (namespace") || !strings.Contains(out, "manifests/report/secrets") {
		t.Errorf("report --stuck does not say the missing Secrets were judged from events alone:\n%s", out)
	}
	t.Logf("report --stuck -o json as the read-only account:\n%s", out)
	if code, out := e.run("report", "--kubeconfig", readonly); code == 2 || !strings.HasPrefix(out, "NODE") {
		t.Fatalf("report as the read-only account: exit %d\n%s", code, out)
	}
	// report --rollout reads the same Nodes and Leases: nothing more.
	if code, out := e.run("report", "--rollout", "--kubeconfig", readonly); code == 2 {
		t.Fatalf("report --rollout as the read-only account: exit 2\n%s", out)
	}
	code, out = e.run("report", "--stuck", "--fix", "--yes", "--kubeconfig", readonly)
	if code != 2 || !strings.Contains(out, "forbidden") || !strings.Contains(out, "manifests/report/fix") {
		t.Fatalf("--fix --yes as the read-only account: exit %d, want 2 and a forbidden error naming the fix variant\n%s", code, out)
	}
	t.Logf("--fix --yes as the read-only account (exit 2):\n%s", out)
	for _, r := range want {
		if s := e.podState(r.Pod); s != "present" {
			t.Fatalf("--fix --yes refused, yet pod %s is %s", r.Pod, s)
		}
	}

	applyRendered(t, e, manifestsReportSecrets)
	e.eventually(30*time.Second, "RBAC of manifests/report/secrets in effect", func() error {
		if !can(t, e.ctx, sa, reportListsSecrets[0]) {
			return errorf("not yet")
		}
		return nil
	})
	checkAccess(t, e.ctx, sa, append(append([]access{}, reportReads...), reportListsSecrets...), append(forbiddenToReport(), deletePods))
	code, rows, out = e.stuckJSON(readonly)
	if code != 1 {
		t.Fatalf("report --stuck with the secrets variant: exit %d\n%s", code, out)
	}
	checkRows(t, out, rows, want, fixes)
	if strings.Contains(out, "note:") {
		t.Errorf("report --stuck with the secrets variant says the Secrets were not listed:\n%s", out)
	}

	applyRendered(t, e, manifestsReportFix)
	e.eventually(30*time.Second, "RBAC of manifests/report/fix in effect", func() error {
		if !can(t, e.ctx, sa, deletePods) {
			return errorf("not yet")
		}
		return nil
	})
	checkAccess(t, e.ctx, sa, append(append(append([]access{}, reportReads...), reportListsSecrets...), deletePods), forbiddenToReport())
	code, rows, out = e.stuckJSON(readonly, "--fix", "--yes")
	if code != 1 {
		t.Fatalf("--fix --yes with the fix variant: exit %d\n%s", code, out)
	}
	checkRows(t, out, rows, want, fixes)
	for pod, state := range map[string]string{"web-cc": "deleting", "web-vol": "deleting", "web-noevent": "deleting", "bare-secret": "present"} {
		if s := e.podState(pod); s != state {
			t.Errorf("after --fix --yes with the fix variant: pod %s is %s, want %s", pod, s, state)
		}
	}
}

func cmpOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func containsLine(lines []string, match func(string) bool) bool {
	for _, l := range lines {
		if match(l) {
			return true
		}
	}
	return false
}

// checkRows compares rows with want on every field but fix, and each fix
// with the texts it must hold (its first text as the prefix).
func checkRows(t *testing.T, out string, got []stuckRow, want []stuckRow, fixes map[string][]string) {
	t.Helper()
	strip := func(rows []stuckRow) []stuckRow {
		var s []stuckRow
		for _, r := range rows {
			r.Fix = ""
			s = append(s, r)
		}
		return s
	}
	if !reflect.DeepEqual(strip(got), strip(want)) {
		t.Fatalf("rows\n%+v\nwant\n%+v\n%s", strip(got), strip(want), out)
	}
	for _, r := range got {
		for i, s := range fixes[r.Pod] {
			if (i == 0 && !strings.HasPrefix(r.Fix, s)) || !strings.Contains(r.Fix, s) {
				t.Errorf("fix of %s %q lacks %q", r.Pod, r.Fix, s)
			}
		}
	}
}
