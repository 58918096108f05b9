package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// planDoc is plan -o json, decoded strictly: a field the reference does not
// list fails the test.
type planDoc struct {
	ConfigMap string `json:"configMap"`
	Rollout   string `json:"rollout"`
	Nodes     int    `json:"nodes"`
	Groups    []struct {
		Outcome   string `json:"outcome"`
		Install   string `json:"install"`
		DaemonSet string `json:"daemonSet"`
		Files     []struct {
			Path    string   `json:"path"`
			Changed []string `json:"changed"`
		} `json:"files"`
		Loadable  *bool  `json:"loadable"`
		LoadError string `json:"loadError"`
		Error     string `json:"error"`
		Nodes     struct {
			Count int      `json:"count"`
			Names []string `json:"names"`
		} `json:"nodes"`
		Diff string `json:"diff"`
	} `json:"groups"`
}

// planNodes adds n Nodes the install's DaemonSet selects, with a label of
// their own that plan is run with (-l), so other tests' Nodes stay out.
func (e *env) planNodes(n int) (names []string, selector string) {
	e.t.Helper()
	label := "plan-test-" + e.ns
	for i := range n {
		name := e.addNode("plan-" + string(rune('a'+i)))
		node, err := e.client.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
		must(e.t, err)
		node.Labels[label] = "yes"
		_, err = e.client.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
		must(e.t, err)
		names = append(names, name)
	}
	return names, label + "=yes"
}

// proposed writes the ConfigMap as it is in the cluster, as kubectl get -o
// yaml prints it, edited, to a file of the test's.
func (e *env) proposed(ns, name string, edit func(cm *corev1.ConfigMap)) string {
	e.t.Helper()
	cm, err := e.client.CoreV1().ConfigMaps(ns).Get(e.ctx, name, metav1.GetOptions{})
	must(e.t, err)
	cm.APIVersion, cm.Kind = "v1", "ConfigMap"
	cm.ManagedFields = nil
	edit(cm)
	y, err := yaml.Marshal(cm)
	must(e.t, err)
	path := filepath.Join(e.dir, "proposed-"+name+".yaml")
	must(e.t, os.WriteFile(path, y, 0o600))
	return path
}

// planJSON runs plan -o json with stdin (nil: none) and decodes it.
func (e *env) planJSON(stdin []byte, args ...string) (int, planDoc, string) {
	e.t.Helper()
	code, out := e.runStdin(stdin, append(append([]string{"plan"}, args...), "-o", "json")...)
	var doc planDoc
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		e.t.Fatalf("plan -o json (exit %d): %v\n%s", code, err, out)
	}
	return code, doc, out
}

// runStdin is run with stdin, stdout alone kept (stderr goes to the log).
func (e *env) runStdin(stdin []byte, args ...string) (int, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, binary, args...)
	cmd.Env = procEnv()
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.noTokenIn(out.String() + errOut.String())
	if errOut.Len() > 0 {
		e.t.Logf("stderr of %v:\n%s", args, errOut.String())
	}
	return code, out.String()
}

// TestPlanManifestInstall: plan -f on a manifest install (Calico v3.32's
// calico.yaml), three nodes. An MTU change in calico-config changes
// plugins.0.mtu on every node (exit 1), each node rendered with its own
// name; the ConfigMap as it is changes nothing (exit 0); a template libcni
// would refuse is reported as not loadable (exit 1); a ConfigMap the
// install does not read and a file that is no ConfigMap are errors (exit
// 2) that say so.
func TestPlanManifestInstall(t *testing.T) {
	e := newInstallEnv(t, "")
	e.applyInstall("manifest-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net))
	nodes, selector := e.planNodes(3)
	common := []string{"--kubeconfig", e.kubeconfig, "--calico-daemonset", e.ns + "/calico-node", "-l", selector}

	mtu := e.proposed(e.ns, "calico-config", func(cm *corev1.ConfigMap) {
		cm.Data["veth_mtu"] = "1400"
		cm.Annotations = map[string]string{"calico-cni-sync.projectcalico.org/rollout": "waves"}
	})
	code, doc, out := e.planJSON(nil, append([]string{"-f", mtu}, common...)...)
	t.Logf("plan -f (veth_mtu 1400) -o json:\n%s", out)
	if code != 1 || doc.Nodes != 3 || len(doc.Groups) != 1 {
		t.Fatalf("MTU change: exit %d, %d nodes, %d groups; want 1, 3 nodes in one group", code, doc.Nodes, len(doc.Groups))
	}
	g := doc.Groups[0]
	if g.Outcome != "change" || g.Install != "manifest" || g.DaemonSet != e.ns+"/calico-node" || g.Nodes.Count != 3 ||
		len(g.Files) != 1 || filepath.Base(g.Files[0].Path) != "10-calico.conflist" || !slices.Equal(g.Files[0].Changed, []string{"plugins.0.mtu"}) {
		t.Errorf("MTU change: group %+v, want plugins.0.mtu of 10-calico.conflist changed on the 3 nodes of the manifest install", g)
	}
	if g.Loadable == nil || !*g.Loadable {
		t.Errorf("MTU change: loadable %v, want true", g.Loadable)
	}
	if doc.ConfigMap != e.ns+"/calico-config" || doc.Rollout != "waves" {
		t.Errorf("configMap %q rollout %q, want %s/calico-config and waves", doc.ConfigMap, doc.Rollout, e.ns)
	}
	if names := slices.Sorted(slices.Values(g.Nodes.Names)); !slices.Equal(names, nodes) {
		t.Errorf("nodes %v, want %v", names, nodes)
	}
	// Rendered for the node it names: the template has
	// __KUBERNETES_NODE_NAME__.
	if !strings.Contains(g.Diff, `"nodename": "`+g.Nodes.Names[0]+`"`) || !strings.Contains(g.Diff, `+      "mtu": 1400`) {
		t.Errorf("MTU change: the diff is not the first node's with the new MTU:\n%s", g.Diff)
	}
	code, text := e.runStdin(nil, append([]string{"plan", "-f", mtu}, common...)...)
	t.Logf("plan -f (veth_mtu 1400):\n%s", text)
	for _, want := range []string{"rollout: waves", "3 nodes: 3 would change", "10-calico.conflist: plugins.0.mtu", "libcni would load the new config"} {
		if code != 1 || !strings.Contains(text, want) {
			t.Errorf("text: exit %d, want 1 and %q", code, want)
		}
	}

	same := e.proposed(e.ns, "calico-config", func(*corev1.ConfigMap) {})
	code, doc, out = e.planJSON(nil, append([]string{"-f", same}, common...)...)
	if code != 0 || len(doc.Groups) != 1 || doc.Groups[0].Outcome != "noChange" || doc.Groups[0].Nodes.Count != 3 || len(doc.Groups[0].Files) != 0 {
		t.Errorf("the ConfigMap as it is: exit %d, want 0 and no change on the 3 nodes\n%s", code, out)
	}

	broken := e.proposed(e.ns, "calico-config", func(cm *corev1.ConfigMap) {
		cm.Data["cni_network_config"] = strings.Replace(cm.Data["cni_network_config"], `"cniVersion": "0.3.1"`, `"cniVersion": "9.9.9"`, 1)
	})
	code, doc, out = e.planJSON(nil, append([]string{"-f", broken}, common...)...)
	if code != 1 || len(doc.Groups) != 1 || doc.Groups[0].Loadable == nil || *doc.Groups[0].Loadable ||
		!strings.Contains(doc.Groups[0].LoadError, `cniVersion "9.9.9" is not supported`) || len(doc.Groups[0].Files) != 1 || !slices.Equal(doc.Groups[0].Files[0].Changed, []string{"cniVersion"}) {
		t.Errorf("a template libcni refuses: exit %d, want 1, not loadable, cniVersion changed\n%s", code, out)
	}

	other := e.proposed(e.ns, "calico-config", func(cm *corev1.ConfigMap) { cm.Name = "not-calico-config" })
	if code, out := e.run(append([]string{"plan", "-f", other}, common...)...); code != 2 ||
		!strings.Contains(out, "ConfigMap "+e.ns+"/not-calico-config is not read by install-cni on any node") || !strings.Contains(out, e.ns+"/calico-config") {
		t.Errorf("a ConfigMap the install does not read: exit %d, want 2 and the ConfigMaps it reads\n%s", code, out)
	}
	notCM := filepath.Join(e.dir, "secret.yaml")
	must(t, os.WriteFile(notCM, []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: calico-config\n"), 0o600))
	if code, out := e.run(append([]string{"plan", "-f", notCM}, common...)...); code != 2 || !strings.Contains(out, "is a Secret") || !strings.Contains(out, "not a ConfigMap") {
		t.Errorf("a Secret: exit %d, want 2 and that it is not a ConfigMap\n%s", code, out)
	}
}

// TestPlanOperatorInstall: plan -f - (stdin) on a tigera operator install
// (calico-system, found with no flag): an MTU change of cni-config's
// config changes plugins.0.mtu on every node (exit 1); the same ConfigMap
// as it is, nothing (exit 0).
func TestPlanOperatorInstall(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net))
	_, selector := e.planNodes(2)
	common := []string{"--kubeconfig", e.kubeconfig, "-l", selector, "-f", "-"}

	changed, err := os.ReadFile(e.proposed("calico-system", "cni-config", func(cm *corev1.ConfigMap) {
		cm.Data["config"] = strings.Replace(cm.Data["config"], `"mtu":0`, `"mtu":1350`, 1)
	}))
	must(t, err)
	code, doc, out := e.planJSON(changed, common...)
	t.Logf("plan -f - (cni-config mtu 1350) -o json:\n%s", out)
	if code != 1 || len(doc.Groups) != 1 {
		t.Fatalf("cni-config change: exit %d, %d groups; want 1 and one group", code, len(doc.Groups))
	}
	g := doc.Groups[0]
	if g.Outcome != "change" || g.Install != "operator" || g.DaemonSet != "calico-system/calico-node" || g.Nodes.Count != 2 ||
		len(g.Files) != 1 || !slices.Equal(g.Files[0].Changed, []string{"plugins.0.mtu"}) || g.Loadable == nil || !*g.Loadable {
		t.Errorf("cni-config change: group %+v, want plugins.0.mtu changed on 2 nodes of the operator install, loadable", g)
	}
	if doc.ConfigMap != "calico-system/cni-config" || doc.Rollout != "" {
		t.Errorf("configMap %q rollout %q, want calico-system/cni-config and none", doc.ConfigMap, doc.Rollout)
	}

	same, err := os.ReadFile(e.proposed("calico-system", "cni-config", func(*corev1.ConfigMap) {}))
	must(t, err)
	if code, doc, out := e.planJSON(same, common...); code != 0 || len(doc.Groups) != 1 || doc.Groups[0].Outcome != "noChange" {
		t.Errorf("cni-config as it is: exit %d, want 0 and no change\n%s", code, out)
	}
}
