package installcni

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Calico v2.6 shipped its DaemonSet as extensions/v1beta1, long removed
// from the API; it still reads as apps/v1.
func TestParseManifestOldDaemonSetVersions(t *testing.T) {
	for _, file := range []string{"manifest-v2.6.yaml", "manifest-v2.6-kdd.yaml"} {
		t.Run(file, func(t *testing.T) {
			m := parseFixture(t, file)
			ds := m.DaemonSet("kube-system", "calico-node")
			if ds == nil {
				t.Fatalf("no DaemonSet kube-system/calico-node in %+v", m.DaemonSets)
			}
			if ds.APIVersion != "apps/v1" || ds.Spec.Selector == nil || ds.Spec.Selector.MatchLabels["k8s-app"] != "calico-node" {
				t.Errorf("apiVersion %q, selector %v", ds.APIVersion, ds.Spec.Selector)
			}
			if c := container(ds.Spec.Template.Spec.Containers, "install-cni"); c == nil || len(c.Env) == 0 {
				t.Errorf("install-cni not decoded: %+v", ds.Spec.Template.Spec.Containers)
			}
		})
	}
	t.Run("apps/v1beta2", func(t *testing.T) {
		m, err := ParseManifest([]byte("apiVersion: apps/v1beta2\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\n"))
		if err != nil || m.DaemonSet("kube-system", "calico-node") == nil {
			t.Fatalf("ParseManifest: %v, %+v", err, m)
		}
	})
}

// kubectl get ds/calico-node cm/calico-config -o yaml|json gives a List.
func TestParseManifestLists(t *testing.T) {
	orig := parseFixture(t, "manifest-v3.32.yaml")
	want := resolveManifest(t, orig)

	items := []any{orig.DaemonSets[0]}
	for _, cm := range orig.ConfigMaps {
		items = append(items, cm)
	}
	for _, sa := range orig.ServiceAccounts {
		items = append(items, sa)
	}
	for i := range items {
		// Objects read back from the API carry their kind.
		data, err := json.Marshal(items[i])
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatal(err)
		}
		switch items[i].(type) {
		case appsv1.DaemonSet:
			obj["apiVersion"], obj["kind"] = "apps/v1", "DaemonSet"
		case corev1.ConfigMap:
			obj["apiVersion"], obj["kind"] = "v1", "ConfigMap"
		case corev1.ServiceAccount:
			obj["apiVersion"], obj["kind"] = "v1", "ServiceAccount"
		}
		items[i] = obj
	}
	listJSON, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	listYAML, err := yaml.JSONToYAML(listJSON)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"json": listJSON, "yaml": listYAML} {
		t.Run(name, func(t *testing.T) {
			m, err := ParseManifest(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := resolveManifest(t, m); !reflect.DeepEqual(got, want) {
				t.Errorf("resolved from a List:\n got %+v\nwant %+v", redactTemplate(got), redactTemplate(want))
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantDS  []string
		wantCM  []string
		wantSA  []string
		wantErr []string
	}{
		{name: "empty", in: ""},
		{name: "comments only", in: "# nothing\n---\n# still nothing\n"},
		{
			name: "other kinds are skipped",
			in: "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: kube-system}\n---\n" +
				"apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRole\nmetadata: {name: calico-node}\n---\n" +
				"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: calico-node, namespace: kube-system}\n",
			wantSA: []string{"kube-system/calico-node"},
		},
		{
			name:   "a JSON stream",
			in:     `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "kube-system"}}` + "\n" + `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "kube-system"}}`,
			wantCM: []string{"kube-system/a", "kube-system/b"},
		},
		{
			name:   "a typed list gives its items their kind",
			in:     "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata: {name: calico-config, namespace: kube-system}\n  data: {veth_mtu: '1440'}\n",
			wantCM: []string{"kube-system/calico-config"},
		},
		{
			name:   "no namespace is the default namespace",
			in:     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: calico-config}\n",
			wantCM: []string{"default/calico-config"},
		},
		{
			name:    "the same object twice",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n",
			wantErr: []string{"document 2", "ConfigMap kube-system/c", "document 1"},
		},
		{
			name:    "a DaemonSet in an unknown version",
			in:      "apiVersion: apps/v1beta1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\n",
			wantErr: []string{"document 1", "apps/v1beta1"},
		},
		{
			name:    "a ConfigMap in an unknown version",
			in:      "apiVersion: v2\nkind: ConfigMap\nmetadata: {name: c}\n",
			wantErr: []string{"ConfigMap", "v2"},
		},
		{
			name:    "a document that is not an object",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n- a\n- b\n",
			wantErr: []string{"document 2", "not an object"},
		},
		{
			name:    "a list in a list",
			in:      "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n",
			wantErr: []string{"List item 1", "inside a list"},
		},
		{
			name:    "a wrong field type",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {veth_mtu: [1]}\n",
			wantErr: []string{"document 1", "ConfigMap"},
		},
		{
			name:    "no name",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: kube-system}\n",
			wantErr: []string{"metadata.name"},
		},
		{
			name:    "not YAML",
			in:      "apiVersion: v1\nkind: ConfigMap\n\tmetadata: [\n",
			wantErr: []string{"document 1"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(c.in))
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseManifest succeeded: %+v", m)
				}
				for _, s := range c.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ds, cms, sas []string
			for _, o := range m.DaemonSets {
				ds = append(ds, o.Namespace+"/"+o.Name)
			}
			for _, o := range m.ConfigMaps {
				cms = append(cms, o.Namespace+"/"+o.Name)
			}
			for _, o := range m.ServiceAccounts {
				sas = append(sas, o.Namespace+"/"+o.Name)
			}
			if !reflect.DeepEqual(ds, c.wantDS) || !reflect.DeepEqual(cms, c.wantCM) || !reflect.DeepEqual(sas, c.wantSA) {
				t.Errorf("got DaemonSets %v, ConfigMaps %v, ServiceAccounts %v", ds, cms, sas)
			}
		})
	}
}

func TestFindDaemonSet(t *testing.T) {
	doc := func(ns, name string) string {
		return "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: " + name + ", namespace: " + ns + "}\n---\n"
	}
	cases := []struct{ name, in, want, wantErr string }{
		{name: "the operator's first", in: doc("kube-system", "canal") + doc("kube-system", "calico-node") + doc("calico-system", "calico-node"), want: "calico-system/calico-node"},
		{name: "then the manifest's", in: doc("kube-system", "canal") + doc("kube-system", "calico-node"), want: "kube-system/calico-node"},
		{name: "then canal", in: doc("kube-system", "canal"), want: "kube-system/canal"},
		{name: "none", in: doc("default", "calico-node"), wantErr: "default/calico-node"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			ds, err := m.FindDaemonSet()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "kube-system/canal") {
					t.Fatalf("error %v, want one naming the candidates and %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ds.Namespace + "/" + ds.Name; got != c.want {
				t.Errorf("found %s, want %s", got, c.want)
			}
		})
	}
}
