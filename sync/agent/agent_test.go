package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// testAgent is an agent on the v3.32 fixture with a token file, whose
// MTU is switched by *mtu, reporting through client.
func testAgent(t *testing.T, client *fake.Clientset, mtu *atomic.Pointer[string]) *Agent {
	t.Helper()
	installs := map[string]inputs.InstallSource{}
	for _, m := range []string{"1400", "1460"} {
		installs[m] = fixtureInstall(t, &m)
	}
	own := &OwnWrites{}
	r := testReconciler(t, func(ctx context.Context) (*inputs.Install, error) { return installs[*mtu.Load()](ctx) }, own)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reporter, stop := status.NewReporter(client, client, "node-1", filepath.Join(t.TempDir(), "status.json"), "advice", logger)
	t.Cleanup(stop)
	cfg := Config{NetDir: r.Dir.NetDir, Managed: []string{cniconf.DefaultConfListName, cniconf.DefaultKubeconfigName},
		TokenFile: tokenFile, ResyncPeriod: time.Hour, TokenCheckPeriod: time.Hour}
	return NewAgent(cfg, NewQueue(logger), own, r, status.NewPublisher(reporter, nil, logger), status.NewMetrics(),
		&status.Health{WedgedAfter: time.Hour, ResyncPeriod: time.Hour}, logger)
}

// runAgent runs a until the test ends, and checks it stops cleanly.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
}

// waitFor polls check until it passes, failing the test after 30 s.
func waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return check(), nil })
	if err != nil {
		t.Fatalf("not within 30s: %s", what)
	}
}

func fileHas(path, s string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), s)
	}
}

// TestReportNeverDelaysTheNextWrite: the condition patch of one change
// (here held by the API server until the end of the test) does not hold up
// the write of the next change.
func TestReportNeverDelaysTheNextWrite(t *testing.T) {
	saved := inputs.APITimeout
	inputs.APITimeout = time.Hour // a hung patch is never given up on here
	t.Cleanup(func() { inputs.APITimeout = saved })
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	client := fake.NewClientset(node)
	var patches atomic.Int32
	held, release := make(chan struct{}, 1), make(chan struct{})
	client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if patches.Add(1) > 1 {
			select {
			case held <- struct{}{}:
			default:
			}
			<-release
		}
		return true, node, nil
	})
	// Released before the agent stops (cleanups run last first).
	var mtu atomic.Pointer[string]
	first := "1400"
	mtu.Store(&first)
	a := testAgent(t, client, &mtu)
	runAgent(t, a)
	t.Cleanup(func() { close(release) })

	conf := filepath.Join(a.reconciler.Dir.NetDir, cniconf.DefaultConfListName)
	waitFor(t, "the first pass written and reported", func() bool { return fileHas(conf, `"mtu": 1400`)() && a.health.Ready() == nil })

	// A hand edit of the kubeconfig changes the condition: its patch is
	// held.
	kc := filepath.Join(a.reconciler.Dir.NetDir, cniconf.DefaultKubeconfigName)
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, kc, strings.ReplaceAll(string(b), "calico-context", "edited-context"))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the condition of the hand edit was not patched")
	}

	// The next change is written while that patch is still held.
	next := "1460"
	mtu.Store(&next)
	a.queue.Trigger("ConfigMap updated")
	waitFor(t, "the next change written while the last change's condition patch is held", fileHas(conf, `"mtu": 1460`))
}

// replaceFile replaces a file by rename, as editors do: a reader never
// sees it half written.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".edit", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".edit", path); err != nil {
		t.Fatal(err)
	}
}

// TestSettlingFileCheckedAgainOnceSettled: a writer changes the conf for
// longer than maxSettle, so a pass is reported while the file is still
// settling; the writer then stops, leaving it corrupt. No event follows,
// and the resync is an hour away: the agent must look again once the file
// has settled, and restore it.
func TestSettlingFileCheckedAgainOnceSettled(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	var mtu atomic.Pointer[string]
	first := "1400"
	mtu.Store(&first)
	a := testAgent(t, client, &mtu)
	a.reconciler.Dir.Settle = 300 * time.Millisecond
	runAgent(t, a)
	conf := filepath.Join(a.reconciler.Dir.NetDir, cniconf.DefaultConfListName)
	waitFor(t, "the first pass written and reported", func() bool { return fileHas(conf, `"mtu": 1400`)() && a.health.Ready() == nil })

	// The writer truncates and rewrites the file every 20 ms (each write
	// an event, each leaving it unparsable) until the agent has reported
	// the file as Corrupt without waiting any longer: past maxSettle.
	writes := 0
	reportedCorrupt := func() bool {
		n, err := client.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := status.ConditionOf(n)
		return c != nil && c.Reason == string(cniconf.Corrupt)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		writes++
		if err := os.WriteFile(conf, fmt.Appendf(nil, `{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [ %d`, writes), 0o600); err != nil {
			return false, err
		}
		return reportedCorrupt(), nil
	})
	if err != nil {
		t.Fatalf("the agent never reported the conf as Corrupt while it was being written (%d writes): %v", writes, err)
	}
	t.Logf("reported Corrupt after %d writes", writes)

	// The writer is done: the file settles, and the agent restores it
	// (with a backup) without a further event.
	waitFor(t, "the corrupt conf restored once it settled", fileHas(conf, `"mtu": 1400`))
}
