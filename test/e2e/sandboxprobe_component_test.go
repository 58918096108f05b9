package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestSandboxProbeComponent: the sandbox-probe Component, added to the base
// as its kustomization says, gives the agent --probe-on-sandbox-failure and
// the one grant that flag needs (list and watch of core Events in every
// namespace, by the reason's field selector), and nothing beside it: an
// Event is still never read by name, deleted, or listed from events.k8s.io.
func TestSandboxProbeComponent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := withComponent(t, "sandbox-probe")
	args := deploy(t, ctx, dir)
	if !slices.Equal(args, []string{"--probe-on-sandbox-failure"}) {
		t.Fatalf("args %v: want --probe-on-sandbox-failure alone", args)
	}
	tok, err := cp.TokenFor(ctx, "kube-system", "calico-cni-sync", time.Hour)
	must(t, err)
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(t, err)
	e := &env{t: t, ctx: ctx}
	e.eventually(30*time.Second, "the Component's grant in effect", func() error {
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
