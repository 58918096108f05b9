package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

const (
	// canaryLabel names the canaries of the rollout tests.
	canaryLabel = "rollout.calico-cni-sync.test/canary"
	// canaryInterval is the wave interval, and so the canary's soak window:
	// long enough for a pod to be created, fail its sandbox and the agent
	// to roll back on a loaded machine, well before wave 1 opens.
	canaryInterval = 2 * time.Minute
	// wrongMTU is a jumbo-frame MTU on an Ethernet underlay.
	wrongMTU = 9001
)

// TestWrongMTUCaughtOnTheCanary: a wrong MTU is caught on the canary node
// before any other node applies it. The real node is the canary (a Node
// label and --rollout-canary-selector); a second node, wave 1, is an agent
// process on the host with a CNI directory of its own. calico-config's
// veth_mtu is set above the underlay's: the canary applies the revision at
// once, a pod on it fails its sandbox (the Calico stand-in refuses an mtu
// above the underlay's, and the kubelet says so in FailedCreatePodSandBox),
// and within its soak window the agent puts the previous files back,
// publishes rolledBack and raises RolledBack on its Node. The other node
// publishes halted and, past the opening of its wave, has never written the
// wrong MTU; the canary has not applied it again; a new pod on the canary
// starts.
func TestWrongMTUCaughtOnTheCanary(t *testing.T) {
	c := newCluster(t)
	const ns = "kube-system"
	inst := manifestV332
	inst.setUp(c)
	patch := []byte(`{"metadata":{"labels":{"` + canaryLabel + `":"true"}}}`)
	if _, err := c.cp.Client.CoreV1().Nodes().Patch(c.ctx, Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rolloutArgs := []string{"--rollout=waves", "--rollout-canary-selector=" + canaryLabel + "=true",
		"--rollout-waves=1", "--rollout-wave-interval=" + canaryInterval.String()}
	// The sandbox-probe Component grants list and watch of Events, which
	// the soak window reads the kubelet's FailedCreatePodSandBox with.
	pod := c.deployAgent(inst.manifests, []string{"manifests/components/sandbox-probe"}, rolloutArgs)
	if args := pod.Spec.Containers[0].Args; !containsAll(args, rolloutArgs) {
		t.Fatalf("the agent runs with %q, want %q among them", args, rolloutArgs)
	}
	c.waitFor("node Ready", time.Minute, func(ctx context.Context) (bool, error) { return c.node.Ready(ctx) })
	c.waitCondition("InSync", time.Minute)

	peer := c.startHostAgent(Name+"-wave1", rolloutArgs)
	first := c.waitState("both nodes applied the first revision", time.Minute, func(node string, s rollout.State) error {
		if s.Phase != rollout.Applied || s.Wave != map[string]int{Name: 0, peer.node: 1}[node] {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	}, Name, peer.node)
	if first[Name].Revision != first[peer.node].Revision {
		t.Fatalf("the nodes name the same inputs differently: %s and %s", first[Name].Revision, first[peer.node].Revision)
	}
	before := readFile(t, inst.conf)
	if mtu := jsonField(t, before, "plugins", "0", "mtu"); mtu != float64(0) {
		t.Fatalf("the canary's conf has mtu %v before the change, want 0", mtu)
	}
	peerBefore, peerWritten := peer.conf()
	c.waitPodRunning(c.testPod("before-change"), 2*time.Minute)

	// The wrong MTU.
	cm, err := c.cp.Client.CoreV1().ConfigMaps(ns).Get(c.ctx, "calico-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["veth_mtu"] = fmt.Sprint(wrongMTU)
	if cm, err = c.cp.Client.CoreV1().ConfigMaps(ns).Update(c.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := rollout.StartOf([]metav1.ObjectMeta{cm.ObjectMeta})
	wave1 := start.Add(canaryInterval)
	t.Logf("veth_mtu=%d at %s; wave 1 opens at %s", wrongMTU, start.Format(time.RFC3339), wave1.Format(time.RFC3339))

	c.waitFor("the canary's conf at mtu "+fmt.Sprint(wrongMTU), time.Minute, func(context.Context) (bool, error) {
		b, err := os.ReadFile(filepath.Join(CNIDir, inst.conf))
		return err == nil && jsonField(t, b, "plugins", "0", "mtu") == float64(wrongMTU), err
	})
	applied := c.waitState("the canary applied, wave 1 waits", time.Minute, func(node string, s rollout.State) error {
		want := map[string]rollout.Phase{Name: rollout.Applied, peer.node: rollout.Waiting}[node]
		if s.Phase != want || s.Revision == first[node].Revision {
			return fmt.Errorf("state %+v, want %s of the new revision", s, want)
		}
		return nil
	}, Name, peer.node)
	rev := applied[Name].Revision
	if applied[peer.node].Revision != rev {
		t.Fatalf("wave 1 waits for %s, the canary applied %s", applied[peer.node].Revision, rev)
	}

	// A pod on the canary fails its sandbox on the wrong MTU.
	stuck := c.testPod("wrong-mtu")
	msg := c.sandboxFailure(stuck, 2*time.Minute)
	failed := time.Now()
	underlay := fmt.Sprintf("mtu %d is above the underlay's %d", wrongMTU, UnderlayMTU)
	if !strings.Contains(msg, `plugin type="calico"`) || !strings.Contains(msg, underlay) {
		t.Fatalf("FailedCreatePodSandBox says %q, want the Calico plugin's %q", msg, underlay)
	}

	// The canary rolls back: the previous files, rolledBack, RolledBack.
	rolledBack := c.waitState("the canary rolled back", time.Minute, func(_ string, s rollout.State) error {
		if s.Phase != rollout.RolledBack || s.Revision != rev || s.Wave != 0 {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	}, Name)[Name]
	t.Logf("the canary rolled back %v after the test saw the sandbox fail: %s", time.Since(failed).Round(time.Millisecond), rolledBack.Reason)
	if !strings.Contains(rolledBack.Reason, "FailedCreatePodSandBox") || !strings.Contains(rolledBack.Reason, underlay) {
		t.Errorf("the canary's rolledBack reason %q does not name the sandbox failure (FailedCreatePodSandBox, %q)", rolledBack.Reason, underlay)
	}
	c.waitFor("the canary's conf back to what it was", time.Minute, func(context.Context) (bool, error) {
		b, err := os.ReadFile(filepath.Join(CNIDir, inst.conf))
		return err == nil && bytes.Equal(b, before), err
	})
	ev := c.waitNodeEvent("RolledBack", time.Minute)
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, rev) {
		t.Errorf("RolledBack event %s %q, want a Warning naming %s", ev.Type, ev.Message, rev)
	}

	// Wave 1 halts, and never writes the revision: checked past its
	// opening, and on every poll until then.
	halted := c.waitState("wave 1 halted", time.Minute, func(_ string, s rollout.State) error {
		if s.Phase != rollout.Halted || s.Revision != rev || s.Wave != 1 {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	}, peer.node)[peer.node]
	t.Logf("wave 1 halted: %s", halted.Reason)
	if !strings.Contains(halted.Reason, Name) {
		t.Errorf("wave 1's halted reason %q does not name the canary %s", halted.Reason, Name)
	}
	until := wave1.Add(10 * time.Second)
	c.waitFor("wave 1's opening passed", time.Until(until)+time.Minute, func(context.Context) (bool, error) {
		if b, _ := peer.conf(); !bytes.Equal(b, peerBefore) {
			t.Fatalf("wave 1 wrote its conf after the canary rolled back:\n%s", b)
		}
		if b := readFile(t, inst.conf); !bytes.Equal(b, before) {
			t.Fatalf("the canary wrote its conf again after rolling back:\n%s", b)
		}
		if time.Now().Before(until) {
			return false, fmt.Errorf("not yet: wave 1 opens at %s", wave1.Format(time.RFC3339))
		}
		return true, nil
	})
	if b, mtime := peer.conf(); !bytes.Equal(b, peerBefore) || !mtime.Equal(peerWritten) {
		t.Errorf("wave 1's conf changed (mtime %s, was %s):\n%s", mtime, peerWritten, b)
	}
	if mtu := jsonField(t, peerBefore, "plugins", "0", "mtu"); mtu != float64(0) {
		t.Errorf("wave 1's conf has mtu %v, want 0", mtu)
	}
	c.waitState("wave 1 still halted, the canary still rolled back", 10*time.Second, func(node string, s rollout.State) error {
		want := map[string]rollout.Phase{Name: rollout.RolledBack, peer.node: rollout.Halted}[node]
		if s.Phase != want || s.Revision != rev {
			return fmt.Errorf("state %+v, want %s of %s", s, want, rev)
		}
		return nil
	}, Name, peer.node)

	// The canary's pods start again.
	c.waitPodRunning(c.testPod("after-rollback"), 2*time.Minute)
}

// waitState waits until each node's Lease publishes a rollout state that
// check accepts, and returns them.
func (c *cluster) waitState(what string, timeout time.Duration, check func(node string, s rollout.State) error, nodes ...string) map[string]rollout.State {
	c.t.Helper()
	out := map[string]rollout.State{}
	c.waitFor(what, timeout, func(ctx context.Context) (bool, error) {
		for _, n := range nodes {
			l, err := c.cp.Client.CoordinationV1().Leases("kube-system").Get(ctx, "calico-cni-sync-"+n, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			s, ok, err := rollout.Decode(l.Annotations[rollout.StateAnnotation])
			if err == nil && !ok {
				err = fmt.Errorf("no %s", rollout.StateAnnotation)
			}
			if err == nil {
				err = check(n, s)
			}
			if err != nil {
				return false, fmt.Errorf("%s: %w", n, err)
			}
			out[n] = s
		}
		return true, nil
	})
	return out
}
