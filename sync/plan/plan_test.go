package plan

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// manifestRequest is a plan of the manifest install of Calico v3.32, offline,
// for n nodes, with calico-config's veth_mtu proposed as mtu.
func manifestRequest(t testing.TB, n int, mtu string) Request {
	t.Helper()
	data, err := os.ReadFile("../../test/testdata/fixtures/installs/manifest-v3.32.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := installcni.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("../../test/testdata/quickstart/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := m.ConfigMap("kube-system", "calico-config")
	if err != nil || cm == nil {
		t.Fatalf("calico-config: %v", err)
	}
	proposed := cm.DeepCopy()
	proposed.Data["veth_mtu"] = mtu
	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%04d", i)
	}
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	return Request{Proposed: proposed, Cluster: inputs.ManifestCluster{Manifest: m}, Nodes: nodes,
		AgentEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		NetDir:   "/etc/cni/net.d", KubeconfigName: "calico-kubeconfig", CA: ca, Listed: 10}
}

// TestPlanGroupsNodesByOutcome: every node is rendered with its own name,
// and nodes whose change is the same are one group, with the first 10 named
// and the first one's diff.
func TestPlanGroupsNodesByOutcome(t *testing.T) {
	res, err := Plan(context.Background(), manifestRequest(t, 25, "1400"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Nodes != 25 || len(res.Groups) != 1 {
		t.Fatalf("%d nodes in %d groups, want 25 in 1: %+v", res.Nodes, len(res.Groups), res.Groups)
	}
	g := res.Groups[0]
	if g.Outcome != Change || g.Nodes.Count != 25 || len(g.Nodes.Names) != 10 || g.Nodes.Names[0] != "node-0000" ||
		len(g.Files) != 1 || !slices.Equal(g.Files[0].Changed, []string{"plugins.0.mtu"}) {
		t.Errorf("group %+v", g)
	}
	if !strings.Contains(g.Diff, `"nodename": "node-0000"`) || strings.Contains(g.Diff, standInToken) {
		t.Errorf("diff is not node-0000's, or shows the token:\n%s", g.Diff)
	}
	// No CA given (the tool's kubeconfig need not hold the nodes'): a
	// stand-in, the same on both sides.
	req := manifestRequest(t, 3, "0")
	req.CA = nil
	same, err := Plan(context.Background(), req)
	if err != nil || len(same.Groups) != 1 || same.Groups[0].Outcome != NoChange || same.Groups[0].Diff != "" {
		t.Errorf("the ConfigMap as it is: %+v, %v", same, err)
	}
}

// BenchmarkPlan5000: plan on 5000 nodes, each rendered twice (now and as
// proposed) with its own name.
func BenchmarkPlan5000(b *testing.B) {
	req := manifestRequest(b, 5000, "1400")
	for b.Loop() {
		res, err := Plan(context.Background(), req)
		if err != nil || res.Groups[0].Nodes.Count != 5000 {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}
