package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// istioCopy is what istio-cni's installer writes with istioOwnedCNIConfig:
// Calico's conflist as it is on disk, its own entry appended (no
// cniVersion), the whole re-marshalled with sorted keys, two spaces and a
// trailing newline (cniconf/testdata/chained/README.md says where that was
// read). newline false gives the same meaning without the newline: another
// layout of the same copy.
func istioCopy(t *testing.T, calico []byte, newline bool) []byte {
	t.Helper()
	var doc, entry map[string]any
	must(t, json.Unmarshal(calico, &doc))
	raw, err := os.ReadFile(filepath.Join("..", "..", "cniconf", "testdata", "chained", "istio-cni.plugin.json"))
	must(t, err)
	must(t, json.Unmarshal(raw, &entry))
	delete(entry, "cniVersion")
	doc["plugins"] = append(doc["plugins"].([]any), entry)
	out, err := json.MarshalIndent(doc, "", "  ")
	must(t, err)
	if newline {
		out = append(out, '\n')
	}
	return out
}

// writeAsIstio writes the copy as istio-cni's installer does (a temporary
// file renamed into place).
func writeAsIstio(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".istio-cni-tmp")
	must(t, os.WriteFile(tmp, content, 0o644))
	must(t, os.Rename(tmp, path))
}

// TestAgentNeverWritesIstiosCopy: istio-cni's own copy of Calico's
// conflist, 02-istio-cni.conflist, sorts first, so the runtime loads it.
// While it matches what the agent wrote, the node is InSync and the status
// says the runtime loads Calico's plugins through the copy; when a
// ConfigMap change reaches 10-calico.conflist, the copy lags it: the
// condition is Shadowed and names the path; the agent writes only its own
// file, never the copy, and a copy istio keeps rewriting gets no answer:
// its rhythm is given in the status, and the agent writes nothing more.
func TestAgentNeverWritesIstiosCopy(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	conf := filepath.Join(e.net, "10-calico.conflist")
	copyPath := filepath.Join(e.net, "02-istio-cni.conflist")
	status := filepath.Join(e.net, "..", "status-"+e.node+".json")
	confMessage := func() (state, message string, err error) {
		b, err := os.ReadFile(status)
		if err != nil {
			return "", "", err
		}
		var rep struct {
			Files []struct{ Path, State, Message string } `json:"files"`
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			return "", "", err
		}
		for _, f := range rep.Files {
			if f.Path == conf {
				return f.State, f.Message, nil
			}
		}
		return "", "", fmt.Errorf("no %s in the status file", conf)
	}
	waitConf := func(what, state string, says ...string) {
		t.Helper()
		e.eventually(time.Minute, what, func() error {
			got, msg, err := confMessage()
			if err != nil {
				return err
			}
			if got != state {
				return errorf("10-calico.conflist is %s: %s", got, msg)
			}
			for _, s := range says {
				if !strings.Contains(msg, s) {
					return errorf("message %q lacks %q", msg, s)
				}
			}
			return nil
		})
	}
	calico, err := os.ReadFile(conf)
	must(t, err)
	copied := istioCopy(t, calico, true)
	writeAsIstio(t, copyPath, copied)
	waitConf("the copy matches", "InSync", "02-istio-cni.conflist, istio-cni's copy of 10-calico.conflist", "the copy matches it")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	writes := a.metric("calico_cni_sync_writes_total")

	e.editConfigMap("veth_mtu", "0", "1440")
	e.waitFile(e.net, "10-calico.conflist", "new MTU", func(s string) bool { return strings.Contains(s, `"mtu": 1440,`) })
	e.waitCondition(e.node, corev1.ConditionTrue, "Shadowed", "02-istio-cni.conflist", "the copy lags it (differs at plugins.0.mtu)", "restart the istio-cni pod")
	if got, err := os.ReadFile(copyPath); err != nil || string(got) != string(copied) {
		t.Fatalf("the agent changed istio-cni's copy (%v)", err)
	}

	// istio-cni copies Calico's file again (its pod restarted), then keeps
	// rewriting the copy: the agent answers none of it.
	calico, err = os.ReadFile(conf)
	must(t, err)
	for i := range 5 {
		copied = istioCopy(t, calico, i%2 == 0)
		writeAsIstio(t, copyPath, copied)
		e.waitPasses(a, 1)
	}
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	waitConf("the copy's rhythm", "InSync", "the copy matches it", "02-istio-cni.conflist was rewritten", "times in the last 10 minutes")
	if w := a.metric("calico_cni_sync_writes_total"); w != writes+1 {
		t.Fatalf("the agent wrote %v files after the copy appeared, want 1 (10-calico.conflist for the new MTU)", w-writes)
	}
	if got, err := os.ReadFile(copyPath); err != nil || string(got) != string(copied) {
		t.Fatalf("the agent changed istio-cni's copy (%v)", err)
	}
}
