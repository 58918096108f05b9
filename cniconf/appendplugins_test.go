package cniconf

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func fixture(name string) func(*testing.T) []byte {
	return func(t *testing.T) []byte { return chainedFixture(t, name) }
}

func literal(s string) func(*testing.T) []byte {
	return func(*testing.T) []byte { return []byte(s) }
}

// TestAppendPlugins: appended entries follow the last rendered one, the
// rendered bytes stay as they are, and setAside takes back exactly what was
// appended, for every golden list and for odd layouts.
func TestAppendPlugins(t *testing.T) {
	entries := []any{chainEntry(t, "linkerd-cni.plugin.json"), chainEntry(t, "istio-cni.plugin.json")}
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.conflist"))
	cases := map[string][]byte{
		"compact":         []byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico"}]}`),
		"empty list":      []byte(`{"name":"k","cniVersion":"0.3.1","plugins":[]}`),
		"plugins first":   []byte("{\"plugins\": [ {\"type\": \"calico\"} ], \"name\": \"k\", \"cniVersion\": \"0.3.1\"}\n"),
		"duplicate lists": []byte(`{"plugins":[{"type":"bridge"}],"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico"}]}`),
	}
	for _, g := range golden {
		cases[filepath.Base(g)] = mustRead(t, g)
	}
	for name, conf := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := appendPlugins(conf, entries)
			must(t, err)
			var before, after map[string]any
			must(t, json.Unmarshal(conf, &before))
			if err := json.Unmarshal(out, &after); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			rest, chained := setAside(out, DefaultChainedTypes)
			if !reflect.DeepEqual(normalize(chained), normalize(entries)) {
				t.Errorf("set aside %v, want the appended entries", chained)
			}
			var back map[string]any
			must(t, json.Unmarshal(rest, &back))
			if !reflect.DeepEqual(normalize(back), normalize(before)) {
				t.Errorf("what remains is not the conf:\n%s", rest)
			}
			end, _, _, ok := pluginsEnd(conf)
			if !ok || string(out[:end]) != string(conf[:end]) || !strings.HasSuffix(string(out), string(conf[end:])) {
				t.Errorf("the conf's own bytes were changed:\n%s", out)
			}
		})
	}
	if _, err := appendPlugins([]byte(`{"type":"calico"}`), entries); err == nil {
		t.Error("appended to a single config")
	}
}

// TestParsesKeepChainedViewsApart: the parses a Dir keeps from pass to pass
// are told apart by the types they set aside. A template that stops
// rendering istio-cni itself makes the same file on disk InSync with
// istio-cni chained, not the file parsed as before.
func TestParsesKeepChainedViewsApart(t *testing.T) {
	d := newTestDir(t)
	d.Parses = NewParses()
	build := func(template string) *Desired {
		in := &Inputs{Template: template, Env: mapEnv(nil), NodeName: "node-1", NetDir: d.NetDir, Token: testToken,
			CA: []byte(testCA), FileExists: func(string) bool { return false }}
		want, err := BuildDesired(in, "")
		must(t, err)
		return want
	}
	owns := build(`{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":__CNI_MTU__},{"type":"istio-cni","plugin_log_level":"info"}]}`)
	mustSync(t, d, owns)
	if st := confState(t, d, owns); st.State != InSync || st.Chained != nil {
		t.Fatalf("rendered istio-cni: %s chained %v", st.State, st.Chained)
	}
	alone := build(`{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":__CNI_MTU__}]}`)
	if st := confState(t, d, alone); st.State != InSync || !slices.Equal(st.Chained, []string{"istio-cni"}) {
		t.Fatalf("istio-cni no longer rendered: %s %v chained %v, want InSync with istio-cni chained", st.State, st.ChangedPaths, st.Chained)
	}
}
