package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadProposed: plan takes exactly one ConfigMap with a name, as
// kubectl apply -f would, and says what else it was given.
func TestReadProposed(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: calico-config\n  namespace: kube-system\ndata:\n  veth_mtu: \"1400\"\n"
	for _, c := range []struct {
		name, doc, wantErr string
	}{
		{"a ConfigMap", cm, ""},
		{"JSON", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cni-config"},"data":{"config":"{}"}}`, ""},
		{"a Deployment", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n", `is a Deployment (apiVersion "apps/v1"), not a ConfigMap`},
		{"no kind", "metadata:\n  name: x\n", "is a document without a kind"},
		{"two objects", cm + "---\n" + cm, "holds 2 objects: plan takes one ConfigMap"},
		{"nothing", "# only a comment\n", "holds 0 objects"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\ndata: {}\n", "has no metadata.name"},
		{"a field a ConfigMap has not", cm + "spec: {}\n", "not a valid ConfigMap"},
		{"an unknown rollout", strings.Replace(cm, "  namespace: kube-system\n", "  namespace: kube-system\n  annotations:\n    calico-cni-sync.projectcalico.org/rollout: slowly\n", 1),
			`is "slowly": must be immediate, waves or paused`},
	} {
		path := filepath.Join(t.TempDir(), "cm.yaml")
		if err := os.WriteFile(path, []byte(c.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readProposed(path, nil)
		if c.wantErr == "" {
			if err != nil || got.Name == "" {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
	got, err := readProposed("-", strings.NewReader(cm))
	if err != nil || got.Namespace != "kube-system" || got.Data["veth_mtu"] != "1400" {
		t.Errorf("stdin: %+v, %v", got, err)
	}
	if _, err := readProposed("-", strings.NewReader("kind: Secret\napiVersion: v1\n")); err == nil || !strings.Contains(err.Error(), "-f stdin is a Secret") {
		t.Errorf("stdin: error %v, want it to name stdin", err)
	}
}
