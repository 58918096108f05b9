package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// suggestion is one entry of drift --suggest -o json.
type suggestion struct {
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Target  string `json:"target"`
	Key     string `json:"key"`
	Value   string `json:"value"`
	Command string `json:"command"`
	Reason  string `json:"reason"`
}

// suggestReport is drift --suggest -o json, as far as these tests read it.
type suggestReport struct {
	Files []struct {
		Path        string       `json:"path"`
		State       string       `json:"state"`
		Suggestions []suggestion `json:"suggestions"`
	} `json:"files"`
}

// handEdit edits the node's conf as a person would: parse, change, write.
func (e *env) handEdit(edit func(conf map[string]any)) string {
	e.t.Helper()
	var conf map[string]any
	must(e.t, json.Unmarshal([]byte(e.read("10-calico.conflist")), &conf))
	edit(conf)
	b, err := json.MarshalIndent(conf, "", "  ")
	must(e.t, err)
	must(e.t, os.WriteFile(filepath.Join(e.net, "10-calico.conflist"), b, 0o600))
	return string(b)
}

// suggestions runs drift --suggest -o json and returns the conf's
// suggestions; the conf must be Drifted.
func (e *env) suggestions(args ...string) []suggestion {
	e.t.Helper()
	code, out := e.runNode(e.nodeArgs(append([]string{"drift", "--suggest", "-o", "json"}, args...)...)...)
	var rep suggestReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		e.t.Fatalf("drift --suggest: exit %d, %v\n%s", code, err, out)
	}
	for _, f := range rep.Files {
		if filepath.Base(f.Path) == "10-calico.conflist" {
			if f.State != "Drifted" {
				e.t.Fatalf("conf is %s, want Drifted", f.State)
			}
			return f.Suggestions
		}
	}
	e.t.Fatalf("no conf in the report:\n%s", out)
	return nil
}

// paste runs each distinct command as a person pastes it into a shell,
// with the test's kubectl first on PATH and the admin kubeconfig.
func (e *env) paste(sugs []suggestion) {
	e.t.Helper()
	done := map[string]bool{}
	for _, s := range sugs {
		if s.Command == "" || done[s.Command] {
			continue
		}
		done[s.Command] = true
		bin, err := filepath.Abs(filepath.Join("..", "bin"))
		must(e.t, err)
		cmd := exec.CommandContext(e.ctx, "bash", "-c", s.Command)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+e.kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			e.t.Fatalf("%s: %v\n%s", s.Command, err, out)
		}
	}
}

// sameJSON compares two documents by meaning.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	must(t, json.Unmarshal([]byte(a), &x))
	must(t, json.Unmarshal([]byte(b), &y))
	return reflect.DeepEqual(x, y)
}

// renderedConf is what render prints for the conf: what install-cni would
// write on a restart now.
func (e *env) renderedConf(args ...string) string {
	e.t.Helper()
	code, out := e.runNode(e.nodeArgs(append([]string{"render", "-o", "json"}, args...)...)...)
	var doc struct {
		Files []struct{ Path, Content string } `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 {
		e.t.Fatalf("render: exit %d, %v\n%s", code, err, out)
	}
	for _, f := range doc.Files {
		if filepath.Base(f.Path) == "10-calico.conflist" {
			return f.Content
		}
	}
	e.t.Fatalf("render printed no conf:\n%s", out)
	return ""
}

func kinds(sugs []suggestion) []string {
	var out []string
	for _, s := range sugs {
		out = append(out, s.Path+"="+s.Kind)
	}
	sort.Strings(out)
	return out
}

// TestSuggestRoundTrip: on a manifest install, each hand edit is followed by
// drift --suggest, its commands are run with kubectl exactly as printed, and
// then the node is InSync with the edit kept, and install-cni would write the
// edited file on a restart.
func TestSuggestRoundTrip(t *testing.T) {
	e := newInstallEnv(t, "")
	e.applyInstall("manifest-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net))
	ds := []string{"--calico-daemonset", e.ns + "/calico-node"}
	if code, out := e.runNode(e.nodeArgs(append([]string{"--once"}, ds...)...)...); code != 0 {
		t.Fatalf("--once: exit %d\n%s", code, out)
	}
	plugin := func(c map[string]any, i int) map[string]any { return c["plugins"].([]any)[i].(map[string]any) }
	cases := []struct {
		name string
		edit func(c map[string]any)
		want []string
	}{
		{"mtu", func(c map[string]any) { plugin(c, 0)["mtu"] = 1400 }, []string{"plugins.0.mtu=configMapKey"}},
		{"log level", func(c map[string]any) { plugin(c, 0)["log_level"] = "debug" }, []string{"plugins.0.log_level=template"}},
		{"bandwidth added", func(c map[string]any) {
			c["plugins"] = append(c["plugins"].([]any), map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}})
		}, []string{"plugins.2=template"}},
		{"portmap removed", func(c map[string]any) {
			list := c["plugins"].([]any)
			c["plugins"] = append([]any{list[0]}, list[2:]...)
		}, []string{"plugins.1=template"}},
	}
	for _, c := range cases {
		edited := e.handEdit(c.edit)
		sugs := e.suggestions(ds...)
		if got := kinds(sugs); !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s: suggestions %v, want %v: %+v", c.name, got, c.want, sugs)
		}
		e.paste(sugs)
		if code, out := e.runNode(e.nodeArgs(append([]string{"drift"}, ds...)...)...); code != 0 {
			t.Fatalf("%s: after the suggested commands, drift exit %d\n%s", c.name, code, out)
		}
		if got := e.read("10-calico.conflist"); got != edited {
			t.Fatalf("%s: the edit was not kept:\n%s", c.name, got)
		}
		if r := e.renderedConf(ds...); !sameJSON(t, r, edited) {
			t.Fatalf("%s: install-cni would write\n%s\nnot the edited file\n%s", c.name, r, edited)
		}
	}
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "calico-config", metav1.GetOptions{})
	must(t, err)
	if cm.Data["veth_mtu"] != "1400" {
		t.Errorf("veth_mtu is %q after the mtu suggestion", cm.Data["veth_mtu"])
	}
}

// installationCRD is the Installation CRD with the schema path the
// suggestion sets (spec.calicoNetwork.mtu, an integer, as in the operator's
// published CRD) and the rest of the spec left open.
const installationCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: installations.operator.tigera.io
spec:
  group: operator.tigera.io
  names: {kind: Installation, listKind: InstallationList, plural: installations, singular: installation}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              calicoNetwork:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  mtu: {type: integer, format: int32}
`

// TestSuggestOperatorInstallation: on an operator install an MTU edit
// points at the Installation's spec.calicoNetwork.mtu; the printed command
// is accepted by the API server and sets the field. (No operator runs here
// to turn it into cni-config; the table from fields to keys is unit-tested.)
func TestSuggestOperatorInstallation(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net), apiServerHere())
	gvr, dyn := e.applyInstallation(map[string]any{"calicoNetwork": map[string]any{"bgp": "Enabled"}})
	if code, out := e.runNode(e.nodeArgs("--once")...); code != 0 {
		t.Fatalf("--once: exit %d\n%s", code, out)
	}
	e.handEdit(func(c map[string]any) { c["plugins"].([]any)[0].(map[string]any)["mtu"] = 1400 })
	sugs := e.suggestions()
	want := []suggestion{{Path: "plugins.0.mtu", Kind: "installation", Target: "installation/default", Key: "spec.calicoNetwork.mtu", Value: "1400"}}
	if len(sugs) != 1 || sugs[0].Path != want[0].Path || sugs[0].Kind != want[0].Kind || sugs[0].Target != want[0].Target ||
		sugs[0].Key != want[0].Key || sugs[0].Value != want[0].Value {
		t.Fatalf("suggestions %+v, want %+v", sugs, want)
	}
	e.paste(sugs)
	got, err := dyn.Resource(gvr).Get(e.ctx, "default", metav1.GetOptions{})
	must(t, err)
	mtu, found, err := unstructured.NestedInt64(got.Object, "spec", "calicoNetwork", "mtu")
	if err != nil || !found || mtu != 1400 {
		t.Errorf("spec.calicoNetwork.mtu = %d (found %t, %v), want 1400", mtu, found, err)
	}
	if bgp, _, _ := unstructured.NestedString(got.Object, "spec", "calicoNetwork", "bgp"); bgp != "Enabled" {
		t.Errorf("the merge patch lost spec.calicoNetwork.bgp: %q", bgp)
	}
}

// applyInstallation serves the tigera operator's Installation CRD and
// creates Installation default with spec, both removed when the test ends;
// it returns the resource and a client to read it back with.
func (e *env) applyInstallation(spec map[string]any) (schema.GroupVersionResource, dynamic.Interface) {
	t := e.t
	t.Helper()
	crd := filepath.Join(e.dir, "installation-crd.yaml")
	must(t, os.WriteFile(crd, []byte(installationCRD), 0o600))
	if out, err := kubectl(e.ctx, e.kubeconfig, "apply", "-f", crd); err != nil {
		t.Fatalf("apply the Installation CRD: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = kubectl(e.ctx, e.kubeconfig, "delete", "-f", crd, "--wait=false") })
	gvr := schema.GroupVersionResource{Group: "operator.tigera.io", Version: "v1", Resource: "installations"}
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	inst := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": map[string]any{"name": "default"},
		"spec": spec,
	}}
	e.eventually(30*time.Second, "Installation CRD served", func() error {
		_, err := dyn.Resource(gvr).Create(e.ctx, inst, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() { _ = dyn.Resource(gvr).Delete(e.ctx, "default", metav1.DeleteOptions{}) })
	return gvr, dyn
}
