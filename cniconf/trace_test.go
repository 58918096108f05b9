package cniconf

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// editJSON applies edit to a parsed copy of doc and returns it marshalled.
func editJSON(t *testing.T, doc []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.MarshalIndent(m, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func plugins(m map[string]any) []any { return m["plugins"].([]any) }

func plugin(m map[string]any, i int) map[string]any { return plugins(m)[i].(map[string]any) }

// sameMeaning compares two JSON documents by meaning.
func sameMeaning(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v in %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// Each hand edit of the v3.32 conflist is traced to the placeholder that
// fills the value, or merged into the template; rendering the merged
// template with the placeholder's new value gives the edited file back.
func TestTraceEdits(t *testing.T) {
	data := fixtureData(t, "calico-config-v3.32.yaml")
	in := goldenInputs(data, clusterEnv)
	desired, err := RenderTemplate(in)
	if err != nil {
		t.Fatal(err)
	}
	bandwidth := map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}}
	cases := []struct {
		name       string
		edit       func(m map[string]any)
		wantEdits  []TracedEdit
		wantInTmpl []string // "" Template when nil
		env        map[string]string
	}{
		{
			name:      "mtu from its placeholder",
			edit:      func(m map[string]any) { plugin(m, 0)["mtu"] = 1400 },
			wantEdits: []TracedEdit{{Path: "plugins.0.mtu", Placeholder: "__CNI_MTU__", Value: "1400"}},
			env:       map[string]string{"CNI_MTU": "1400"},
		},
		{
			name:      "node name inside a string",
			edit:      func(m map[string]any) { plugin(m, 0)["nodename"] = "node-2" },
			wantEdits: []TracedEdit{{Path: "plugins.0.nodename", Placeholder: "__KUBERNETES_NODE_NAME__", Value: "node-2"}},
		},
		{
			name:       "log level, literal",
			edit:       func(m map[string]any) { plugin(m, 0)["log_level"] = "debug" },
			wantEdits:  []TracedEdit{{Path: "plugins.0.log_level"}},
			wantInTmpl: []string{`"log_level": "debug"`, `"mtu": __CNI_MTU__`, `"__KUBECONFIG_FILEPATH__"`, `"__KUBERNETES_NODE_NAME__"`},
		},
		{
			name:       "bandwidth added",
			edit:       func(m map[string]any) { m["plugins"] = append(plugins(m), bandwidth) },
			wantEdits:  []TracedEdit{{Path: "plugins.2"}},
			wantInTmpl: []string{`"type": "bandwidth"`, `"mtu": __CNI_MTU__`},
		},
		{
			name:       "portmap removed",
			edit:       func(m map[string]any) { m["plugins"] = plugins(m)[:1] },
			wantEdits:  []TracedEdit{{Path: "plugins.1", Removed: true}},
			wantInTmpl: []string{`"mtu": __CNI_MTU__`},
		},
		{
			name: "bandwidth inserted before portmap",
			edit: func(m map[string]any) {
				m["plugins"] = []any{plugins(m)[0], bandwidth, plugins(m)[1]}
			},
			wantEdits:  []TracedEdit{{Path: "plugins.1"}},
			wantInTmpl: []string{`"type": "bandwidth"`, `"type": "portmap"`},
		},
		{
			name:       "key removed",
			edit:       func(m map[string]any) { delete(plugin(m, 0), "log_file_path") },
			wantEdits:  []TracedEdit{{Path: "plugins.0.log_file_path", Removed: true}},
			wantInTmpl: []string{`"mtu": __CNI_MTU__`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			disk := editJSON(t, desired, c.edit)
			tr, err := TraceEdits(in.Template, desired, disk, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tr.Edits, c.wantEdits) {
				t.Errorf("edits %+v, want %+v", tr.Edits, c.wantEdits)
			}
			if (tr.Template != "") != (c.wantInTmpl != nil) {
				t.Fatalf("template %q, want one: %v", tr.Template, c.wantInTmpl != nil)
			}
			for _, s := range c.wantInTmpl {
				if !strings.Contains(tr.Template, s) {
					t.Errorf("template lacks %s:\n%s", s, tr.Template)
				}
			}
			// The round trip: what install-cni writes from the lasting change.
			again := *in
			if tr.Template != "" {
				again.Template = tr.Template
			}
			env := map[string]string{}
			for k, v := range clusterEnv {
				env[k] = v
			}
			for k, v := range c.env {
				env[k] = v
			}
			again.Env = mapEnv(env)
			for _, e := range tr.Edits {
				if e.Placeholder == "__KUBERNETES_NODE_NAME__" {
					again.NodeName = e.Value
				}
			}
			out, err := RenderTemplate(&again)
			if err != nil {
				t.Fatal(err)
			}
			if !sameMeaning(t, out, disk) {
				t.Errorf("render of the lasting change:\n%s\nwant the edited file:\n%s", out, disk)
			}
		})
	}
}

// An edit of a chained plugin another agent appended is no edit; a file
// equal to the render traces to nothing.
func TestTraceEditsNothing(t *testing.T) {
	data := fixtureData(t, "calico-config-v3.32.yaml")
	in := goldenInputs(data, clusterEnv)
	desired, err := RenderTemplate(in)
	if err != nil {
		t.Fatal(err)
	}
	istio := editJSON(t, desired, func(m map[string]any) {
		m["plugins"] = append(plugins(m), map[string]any{"type": "istio-cni", "log_level": "debug"})
	})
	for name, disk := range map[string][]byte{"same": desired, "chained": istio} {
		tr, err := TraceEdits(in.Template, desired, disk, DefaultChainedTypes)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Edits) != 0 || tr.Template != "" {
			t.Errorf("%s: %+v", name, tr)
		}
	}
}

// Every placeholder the renderer fills is listed, with the variable or the
// computation behind it.
func TestPlaceholders(t *testing.T) {
	got := map[string]Placeholder{}
	for _, p := range Placeholders() {
		got[p.Name] = p
	}
	for name, want := range map[string]Placeholder{
		"__CNI_MTU__":              {Name: "__CNI_MTU__", Var: "CNI_MTU"},
		"__LOG_LEVEL__":            {Name: "__LOG_LEVEL__", Var: "LOG_LEVEL"},
		"__ETCD_ENDPOINTS__":       {Name: "__ETCD_ENDPOINTS__", Var: "ETCD_ENDPOINTS"},
		"__KUBERNETES_NODE_NAME__": {Name: "__KUBERNETES_NODE_NAME__", Computed: "the node name"},
	} {
		if got[name] != want {
			t.Errorf("%s: %+v, want %+v", name, got[name], want)
		}
	}
	if !got[TokenPlaceholder].Secret {
		t.Errorf("the token placeholder is not secret: %+v", got[TokenPlaceholder])
	}
}

// An edit made in place (an editor keeps the key order) gives back the
// template as it was, in its order, with only the edited value changed.
func TestTraceEditsKeepsOrder(t *testing.T) {
	data := fixtureData(t, "calico-config-v3.32.yaml")
	in := goldenInputs(data, clusterEnv)
	desired, err := RenderTemplate(in)
	if err != nil {
		t.Fatal(err)
	}
	disk := strings.Replace(string(desired), `"log_level": "info"`, `"log_level": "debug"`, 1)
	tr, err := TraceEdits(in.Template, desired, []byte(disk), nil)
	if err != nil {
		t.Fatal(err)
	}
	squeeze := strings.NewReplacer(" ", "", "\n", "", "\t", "")
	want := squeeze.Replace(strings.Replace(in.Template, `"log_level": "info"`, `"log_level": "debug"`, 1))
	if got := squeeze.Replace(tr.Template); got != want {
		t.Errorf("merged template, white space removed:\n got %s\nwant %s", got, want)
	}
}
