package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestSandboxProbeComponent: the sandbox-probe Component, added to the base
// as its kustomization says, gives the agent --probe-on-sandbox-failure and
// changes nothing else: the grant that flag needs (list and watch of core
// Events in every namespace, by the reason's field selector) is the base's,
// which the health gate of a rollout in waves needs too. With it an Event
// is still never read by name, deleted, or listed from events.k8s.io.
func TestSandboxProbeComponent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := withComponent(t, "sandbox-probe")
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(admin, cp.Config))
	plain, err := kubectl(ctx, admin, "kustomize", manifestsBase)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", manifestsBase, err, plain)
	}
	with, err := kubectl(ctx, admin, "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize with sandbox-probe: %v\n%s", err, with)
	}
	if want := strings.Replace(plain, "      - args: []\n", "      - args:\n        - --probe-on-sandbox-failure\n", 1); with != want {
		t.Errorf("the Component changes more than the DaemonSet's args:\n%s", with)
	}

	args := deploy(t, ctx, dir)
	if !slices.Equal(args, []string{"--probe-on-sandbox-failure"}) {
		t.Fatalf("args %v: want --probe-on-sandbox-failure alone", args)
	}
	tok, err := cp.TokenFor(ctx, "kube-system", "calico-cni-sync", time.Hour)
	must(t, err)
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(t, err)
	e := &env{t: t, ctx: ctx}
	e.eventually(30*time.Second, "the base's grant in effect", func() error {
		return listSandboxFailures(sa, false)(ctx)
	})
	expectAllowed(t, ctx, request{"watch sandbox failures in every namespace", listSandboxFailures(sa, true)})
	c := sa.CoreV1()
	expectForbidden(t, ctx,
		request{"get an Event in default", func(ctx context.Context) error { return errOf(c.Events("default").Get(ctx, "x", metav1.GetOptions{})) }},
		request{"delete an Event in default", func(ctx context.Context) error {
			return c.Events("default").Delete(ctx, "x", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		request{"list events.k8s.io Events", func(ctx context.Context) error {
			return errOf(sa.EventsV1().Events("").List(ctx, metav1.ListOptions{}))
		}})
}
