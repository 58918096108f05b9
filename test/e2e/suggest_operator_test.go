package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestSuggestOperatorSpecVersion: on the operator's master install, whose
// cni-config declares cniVersion 1.0.0, the agent writes a 1.0.0 conflist
// from calico-node's DaemonSet; a hand edit of cniVersion points at the
// Installation's spec.cni.specVersion, and the printed command sets it.
// Once cni-config carries unsupported.operator.tigera.io/ignore: "true",
// the same edit is kept in cni-config's template instead, the reason says
// cni-config no longer follows the Installation, and after the printed
// command the node is InSync with the edit kept. (No operator runs here.)
func TestSuggestOperatorSpecVersion(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.applyInstall("operator-master.yaml", cniHostPath(t, e.net), apiServerHere())
	gvr, dyn := e.applyInstallation(map[string]any{"cni": map[string]any{"type": "Calico"}})

	if code, out := e.runNode(e.nodeArgs("--once")...); code != 0 {
		t.Fatalf("--once: exit %d\n%s", code, out)
	}
	if conf := e.read("10-calico.conflist"); !strings.Contains(conf, `"cniVersion": "1.0.0"`) {
		t.Fatalf("the written conflist does not declare cniVersion 1.0.0:\n%s", conf)
	}

	edited := e.handEdit(func(c map[string]any) { c["cniVersion"] = "0.4.0" })
	sugs := e.suggestions()
	if len(sugs) != 1 || sugs[0].Path != "cniVersion" || sugs[0].Kind != "installation" || sugs[0].Target != "installation/default" ||
		sugs[0].Key != "spec.cni.specVersion" || sugs[0].Value != "0.4.0" {
		t.Fatalf("suggestions %+v, want spec.cni.specVersion 0.4.0 in installation/default", sugs)
	}
	e.paste(sugs)
	got, err := dyn.Resource(gvr).Get(e.ctx, "default", metav1.GetOptions{})
	must(t, err)
	if v, _, _ := unstructured.NestedString(got.Object, "spec", "cni", "specVersion"); v != "0.4.0" {
		t.Errorf("spec.cni.specVersion = %q after the command, want 0.4.0", v)
	}
	if v, _, _ := unstructured.NestedString(got.Object, "spec", "cni", "type"); v != "Calico" {
		t.Errorf("the merge patch lost spec.cni.type: %q", v)
	}

	cm, err := e.client.CoreV1().ConfigMaps("calico-system").Get(e.ctx, "cni-config", metav1.GetOptions{})
	must(t, err)
	cm.Annotations = map[string]string{"unsupported.operator.tigera.io/ignore": "true"}
	_, err = e.client.CoreV1().ConfigMaps("calico-system").Update(e.ctx, cm, metav1.UpdateOptions{})
	must(t, err)
	sugs = e.suggestions()
	if len(sugs) != 1 || sugs[0].Path != "cniVersion" || sugs[0].Kind != "template" ||
		sugs[0].Target != "calico-system/configmap/cni-config" || sugs[0].Key != "config" ||
		!strings.Contains(sugs[0].Reason, "no longer follows the Installation") {
		t.Fatalf("suggestions %+v, want the template in cni-config, the reason saying it no longer follows the Installation", sugs)
	}
	e.paste(sugs)
	if code, out := e.runNode(e.nodeArgs("drift")...); code != 0 {
		t.Fatalf("after the suggested command, drift exit %d\n%s", code, out)
	}
	if got := e.read("10-calico.conflist"); got != edited {
		t.Fatalf("the edit was not kept:\n%s", got)
	}
}
