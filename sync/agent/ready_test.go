package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// readyAgent is an agent whose inputs come from install, reporting through
// client, with /readyz wired as the command wires it.
func readyAgent(t *testing.T, client *fake.Clientset, install inputs.InstallSource) *Agent {
	t.Helper()
	own := &OwnWrites{}
	r := testReconciler(t, install, own)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reporter, stop := status.NewReporter(client, client, "node-1", "", "advice", logger)
	t.Cleanup(stop)
	cfg := Config{NetDir: r.Dir.NetDir, Managed: []string{cniconf.DefaultConfListName, cniconf.DefaultKubeconfigName},
		ResyncPeriod: time.Hour, TokenCheckPeriod: time.Hour}
	h := &status.Health{WedgedAfter: time.Hour, ResyncPeriod: time.Hour}
	a := NewAgent(cfg, NewQueue(logger), own, r, status.NewPublisher(reporter, nil, logger), status.NewMetrics(), h, logger)
	h.Faults = a.OwnFault
	return a
}

// passDone waits for the first pass to be over (reported) and returns what
// /readyz says then.
func passDone(t *testing.T, a *Agent) error {
	t.Helper()
	var err error
	waitFor(t, "the first pass over", func() bool {
		err = a.health.Ready()
		return err == nil || !strings.Contains(err.Error(), "no reconcile reported yet")
	})
	return err
}

func conditionReason(client *fake.Clientset) string {
	n, err := client.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == status.ConditionType {
			return c.Reason
		}
	}
	return ""
}

// TestReadyLine: /readyz fails for the agent's own faults and never for the
// cluster's inputs.
func TestReadyLine(t *testing.T) {
	mtu := "1400"
	good := fixtureInstall(t, &mtu)
	badTemplate := func(ctx context.Context) (*inputs.Install, error) {
		in, err := good(ctx)
		if err == nil {
			in.Template = `{"name": "k8s-pod-network", "plugins": [` // what a bad edit of calico-config leaves
		}
		return in, err
	}
	forbidden := func(context.Context) (*inputs.Install, error) {
		return nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "calico-node", errors.New("RBAC: access denied"))
	}

	t.Run("a bad ConfigMap keeps it ready and is reported as Error", func(t *testing.T) {
		client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
		a := readyAgent(t, client, badTemplate)
		runAgent(t, a)
		waitFor(t, "the Error reported", func() bool { return conditionReason(client) == string(cniconf.Error) })
		waitFor(t, "ready", func() bool { return a.health.Ready() == nil })
	})
	t.Run("inputs refused by RBAC: not ready", func(t *testing.T) {
		client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
		a := readyAgent(t, client, forbidden)
		runAgent(t, a)
		waitFor(t, "the Error reported", func() bool { return conditionReason(client) == string(cniconf.Error) })
		if err := passDone(t, a); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Fatalf("/readyz with the agent's RBAC refused: %v, want a failure naming it", err)
		}
	})
	t.Run("state directory unusable: not ready", func(t *testing.T) {
		client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
		a := readyAgent(t, client, good)
		// A file where the state directory must be: no write can be
		// recorded, whoever runs the agent (root included).
		if err := os.MkdirAll(filepath.Dir(a.reconciler.Dir.StateDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.reconciler.Dir.StateDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		runAgent(t, a)
		waitFor(t, "the failed pass reported", func() bool { return conditionReason(client) != "" })
		if err := passDone(t, a); err == nil {
			t.Fatal("/readyz passes while the agent cannot use its state directory")
		} else {
			t.Logf("/readyz: %v", err)
		}
		// Put right, the next pass makes it ready again.
		if err := os.Remove(a.reconciler.Dir.StateDir); err != nil {
			t.Fatal(err)
		}
		a.queue.Trigger("resync")
		waitFor(t, "ready once the directory is usable", func() bool { return a.health.Ready() == nil })
	})
	t.Run("credential refused when reporting: not ready", func(t *testing.T) {
		client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
		var refuse atomic.Bool
		client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			if refuse.Load() {
				return true, nil, apierrors.NewUnauthorized("Unauthorized")
			}
			return false, nil, nil
		})
		a := readyAgent(t, client, good)
		runAgent(t, a)
		waitFor(t, "ready", func() bool { return a.health.Ready() == nil })
		refuse.Store(true)
		// A hand edit changes the condition: its patch is refused.
		kc := filepath.Join(a.reconciler.Dir.NetDir, cniconf.DefaultKubeconfigName)
		b, err := os.ReadFile(kc)
		if err != nil {
			t.Fatal(err)
		}
		replaceFile(t, kc, strings.ReplaceAll(string(b), "calico-context", "edited-context"))
		waitFor(t, "not ready once the API server refuses the agent's credential", func() bool {
			err := a.health.Ready()
			return err != nil && strings.Contains(err.Error(), "Unauthorized")
		})
		refuse.Store(false)
		waitFor(t, "ready again once a report goes through", func() bool { return a.health.Ready() == nil })
	})
}
