package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"
)

// kubeletSandboxFailure is a FailedCreatePodSandBox event as the kubelet's
// recorder writes it for a pod on node, with Calico's words for a refused
// first request.
func kubeletSandboxFailure(ns, pod, node string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: pod + "." + strconv.FormatInt(at.UnixNano(), 16), Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod, UID: types.UID("uid-" + pod), APIVersion: "v1"},
		Reason:         sandbox.Reason,
		Message: `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "0123": ` +
			`plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: ` +
			`clusterinformations.crd.projectcalico.org "default" is forbidden`,
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at), Count: 1, Type: corev1.EventTypeWarning,
		ReportingController: "kubelet", ReportingInstance: node,
	}
}

// refusedRequests is how many requests the API server has refused at
// authorization, by its own authorization_attempts_total: in this test,
// once the CNI account's binding is gone, only the agent's probes with that
// account's token are refused (every other client is an admin).
func refusedRequests(t *testing.T, ctx context.Context) float64 {
	t.Helper()
	raw, err := cp.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	must(t, err)
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "authorization_attempts_total{") || strings.HasPrefix(l, "#") ||
			!strings.Contains(l, `result="denied"`) && !strings.Contains(l, `result="no-opinion"`) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		must(t, err)
		sum += v
	}
	return sum
}

// TestSandboxFailureProbesAtOnce: with a check period of an hour, the CNI
// account's ClusterRoleBinding deleted says nothing until the kubelet
// reports a sandbox failure on the node: then the agent probes Calico's
// credential at once (one request), and the condition is CNIForbidden
// within seconds. A failure on another node, delivered just before by the
// same watch, probes nothing; a second failure on the node moments later
// probes nothing either (the probe is rate-limited). The events' list and
// field selector are the real API server's.
func TestSandboxFailureProbesAtOnce(t *testing.T) {
	e := newInstallEnv(t, "")
	serveClusterInformation(t, e.ctx, e.kubeconfig)
	if out, err := kubectl(e.ctx, e.kubeconfig, "apply", "--server-side", "-f", filepath.Join("..", "realnode", "testdata", "clusterinformation-default.yaml")); err != nil {
		t.Fatalf("create clusterinformations/default: %v\n%s", err, out)
	}
	e.applyInstall("operator-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net), apiServerHere())
	// The CNI account's RBAC is the env's own binding of Calico's role
	// (bindCNIAccounts), which this test takes away.
	binding, err := cp.Client.RbacV1().ClusterRoleBindings().Get(e.ctx, e.cniBinding, metav1.GetOptions{})
	must(t, err)
	tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", 24*time.Hour)
	must(t, err)
	path := filepath.Join(e.net, "calico-kubeconfig")
	must(t, os.WriteFile(path, tokenWatchKubeconfig(e, "https://"+cp.Host(), cp.CAData(), tok), 0o600))

	a := e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node", "--token-check-period", "1h", "--credential-probe=true", "--probe-on-sandbox-failure")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	// The first pass judges the token before it writes the conf that
	// names the kubeconfig (by a review); the probe waits for a trigger.
	e.waitStatus("the token accepted", func(r nodeReport) error {
		if r.Token.Accepted == nil || !*r.Token.Accepted {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	must(t, cp.Client.RbacV1().ClusterRoleBindings().Delete(e.ctx, binding.Name, metav1.DeleteOptions{}))
	// The authorizer's cache has the deletion before the kubelet would
	// next fail: no probe below may find the binding still there.
	e.eventually(30*time.Second, "the CNI account refused", func() error {
		r, err := cp.Client.AuthorizationV1().SubjectAccessReviews().Create(e.ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: saSubject(e.ns, "calico-cni-plugin"), ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "get", Group: "crd.projectcalico.org", Resource: "clusterinformations", Name: "default"}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if r.Status.Allowed {
			return errors.New("still allowed")
		}
		return nil
	})
	probes := refusedRequests(t, e.ctx)
	if c, err := e.condition(e.node); err != nil || c.Reason != "InSync" {
		t.Fatalf("before any sandbox failure the condition is %+v (%v), want InSync: nothing but the failure may explain what follows", c, err)
	}

	events := cp.Client.CoreV1().Events(e.ns)
	now := time.Now()
	_, err = events.Create(e.ctx, kubeletSandboxFailure(e.ns, "elsewhere", "another-node", now), metav1.CreateOptions{})
	must(t, err)
	_, err = events.Create(e.ctx, kubeletSandboxFailure(e.ns, "here", e.node, now), metav1.CreateOptions{})
	must(t, err)
	// The API server selects both by the agent's field selector (its
	// selectable fields hold no host), and the agent tells them apart.
	sel, err := events.List(e.ctx, metav1.ListOptions{FieldSelector: sandbox.Selector})
	must(t, err)
	if len(sel.Items) != 2 {
		t.Fatalf("the field selector %s selects %d events, want 2", sandbox.Selector, len(sel.Items))
	}
	_, err = events.List(e.ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("source.host", e.node).String()})
	if err == nil {
		t.Fatal("the API server selects events by source.host; the agent could select its node's")
	}

	start := time.Now()
	e.waitCondition(e.node, corev1.ConditionTrue, "CNIForbidden", "get clusterinformations.crd.projectcalico.org")
	t.Logf("CNIForbidden %v after the sandbox failure (check period 1h)", time.Since(start).Round(time.Millisecond))
	log := a.Output()
	if !strings.Contains(log, "pod="+e.ns+"/here") {
		t.Fatalf("the agent did not log the failure on its node:\n%s", tail(log))
	}
	if strings.Contains(log, e.ns+"/elsewhere") {
		t.Fatalf("the agent acted on another node's sandbox failure:\n%s", tail(log))
	}
	if n := refusedRequests(t, e.ctx) - probes; n != 1 {
		t.Fatalf("%v probes after one sandbox failure on the node and one elsewhere, want 1", n)
	}

	// Another failure on the node moments later: no second probe, the
	// verdict is seconds old (the agent says so at -v 1).
	_, err = events.Create(e.ctx, kubeletSandboxFailure(e.ns, "here-again", e.node, time.Now()), metav1.CreateOptions{})
	must(t, err)
	e.eventually(30*time.Second, "the second failure seen", func() error {
		for _, l := range strings.Split(a.Output(), "\n") {
			if strings.Contains(l, "pod="+e.ns+"/here-again") {
				if !strings.Contains(l, "probed moments ago") {
					return errors.New("probed again: " + l)
				}
				return nil
			}
		}
		return errors.New("not yet")
	})
	if n := refusedRequests(t, e.ctx) - probes; n != 1 {
		t.Fatalf("%v probes after two sandbox failures on the node within %v, want 1", n, 30*time.Second)
	}
}
