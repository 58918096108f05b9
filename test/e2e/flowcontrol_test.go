package e2e

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

const manifestsFlowControl = "../../manifests/flowcontrol"

// classify sends one request as the given identity and returns the UIDs of
// the FlowSchema and the priority level the API server's Priority and
// Fairness filter put it in (it says so in every response, a refused one
// included).
func classify(t *testing.T, cfg *rest.Config, method, path string, body []byte) (flowSchema, priorityLevel types.UID) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	must(t, err)
	req, err := http.NewRequest(method, cfg.Host+path, bytes.NewReader(body))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	must(t, err)
	_ = resp.Body.Close()
	return types.UID(resp.Header.Get("X-Kubernetes-PF-FlowSchema-UID")), types.UID(resp.Header.Get("X-Kubernetes-PF-PriorityLevel-UID"))
}

// TestFlowControl: with manifests/flowcontrol applied, the real API server
// puts the agent's Event writes, and only those, into the agents' own
// priority level; its Lease renewals and everyone else's Events stay where
// they were.
func TestFlowControl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(admin, cp.Config))
	if out, err := kubectl(ctx, admin, "apply", "--server-side", "-k", manifestsFlowControl); err != nil {
		t.Fatalf("apply %s: %v\n%s", manifestsFlowControl, err, out)
	}
	t.Cleanup(func() {
		_, _ = kubectl(context.Background(), admin, "delete", "-k", manifestsFlowControl, "--wait=false")
	})

	fc := cp.Client.FlowcontrolV1()
	fs, err := fc.FlowSchemas().Get(ctx, "calico-cni-sync-events", metav1.GetOptions{})
	must(t, err)
	pl, err := fc.PriorityLevelConfigurations().Get(ctx, "calico-cni-sync-events", metav1.GetOptions{})
	must(t, err)
	schemas, err := fc.FlowSchemas().List(ctx, metav1.ListOptions{})
	must(t, err)
	name := map[types.UID]string{}
	for _, s := range schemas.Items {
		name[s.UID] = s.Name
	}

	token, err := cp.TokenFor(ctx, "kube-system", "calico-cni-sync", 10*time.Minute)
	must(t, err)
	agent := cp.ConfigForToken(token)
	event := []byte(`{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"flowcontrol-"},"involvedObject":{"kind":"Node","name":"n"},"reason":"ConfigWritten","message":"m"}`)

	// The configuration takes effect when the API server's controller has
	// seen it: wait for the first classification, then check the rest.
	var gotFS, gotPL types.UID
	e := &env{t: t, ctx: ctx}
	e.eventually(30*time.Second, "the agent's Event in calico-cni-sync-events", func() error {
		gotFS, gotPL = classify(t, agent, http.MethodPost, "/api/v1/namespaces/default/events", event)
		if gotFS != fs.UID {
			return errorf("FlowSchema %q, want %q", gotFS, fs.UID)
		}
		return nil
	})
	if gotPL != pl.UID {
		t.Errorf("the agent's Event: priority level %q, want calico-cni-sync-events %q", gotPL, pl.UID)
	}
	if got, _ := classify(t, agent, http.MethodPost, "/apis/events.k8s.io/v1/namespaces/default/events", event); got != fs.UID {
		t.Errorf("the agent's events.k8s.io Event: FlowSchema %q, want %q", got, fs.UID)
	}
	// The rest keeps the built-in schemas: the Lease renewal that of
	// leader elections (kube-system's ServiceAccounts' Leases), a Node
	// condition patch that of kube-system's ServiceAccounts.
	if got, _ := classify(t, agent, http.MethodGet, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/calico-cni-sync-n", nil); name[got] != "system-leader-election" {
		t.Errorf("the agent's Lease: FlowSchema %q, want system-leader-election", name[got])
	}
	if got, _ := classify(t, agent, http.MethodPatch, "/api/v1/nodes/n/status", []byte(`{}`)); name[got] != "kube-system-service-accounts" {
		t.Errorf("the agent's Node status patch: FlowSchema %q, want kube-system-service-accounts", name[got])
	}
	other, err := cp.TokenFor(ctx, "kube-system", "flowcontrol-other", 10*time.Minute)
	must(t, err)
	if got, _ := classify(t, cp.ConfigForToken(other), http.MethodPost, "/api/v1/namespaces/default/events", event); name[got] != "kube-system-service-accounts" {
		t.Errorf("another ServiceAccount's Event: FlowSchema %q, want kube-system-service-accounts", name[got])
	}
}
