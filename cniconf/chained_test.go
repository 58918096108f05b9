package cniconf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// chainedFixture reads a layout of testdata/chained (see its README).
func chainedFixture(t *testing.T, name string) []byte {
	t.Helper()
	return mustRead(t, filepath.Join("testdata", "chained", name))
}

// chainEntry is a chained plugin's entry as its installer appends it.
func chainEntry(t *testing.T, name string) map[string]any {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal(chainedFixture(t, name), &m))
	delete(m, "cniVersion")
	return m
}

// installerInsert does what istio-cni's and linkerd-cni's installers do to
// a config (testdata/chained/README.md): drop their own entry from the list,
// append it at the end, and write the whole file re-marshalled, keys sorted.
func installerInsert(t *testing.T, conf []byte, entry map[string]any, newline bool) []byte {
	t.Helper()
	var doc map[string]any
	must(t, json.Unmarshal(conf, &doc))
	if _, single := doc["type"]; single {
		delete(doc, "cniVersion")
		doc = map[string]any{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": []any{doc}}
	}
	plugins, _ := doc["plugins"].([]any)
	for i, p := range plugins {
		if pluginType(p) == entry["type"] {
			plugins = slices.Delete(plugins, i, i+1)
			break
		}
	}
	doc["plugins"] = append(plugins, entry)
	out, err := json.MarshalIndent(doc, "", "  ")
	must(t, err)
	if newline {
		out = append(out, '\n')
	}
	return out
}

// The installers, run against the conf at path. istio-cni's leaves a file
// that already holds its plugin alone; linkerd-cni's rewrites any file it
// did not write last.
var installers = map[string]func(t *testing.T, path string){
	"istio-cni": func(t *testing.T, path string) {
		conf := mustRead(t, path)
		for _, p := range pluginsOf(conf) {
			if pluginType(p) == "istio-cni" {
				return
			}
		}
		must(t, os.WriteFile(path, installerInsert(t, conf, chainEntry(t, "istio-cni.plugin.json"), true), 0o644))
	},
	"linkerd-cni": func(t *testing.T, path string) {
		out := installerInsert(t, mustRead(t, path), chainEntry(t, "linkerd-cni.plugin.json"), false)
		must(t, os.WriteFile(path, out, 0o644))
	},
}

// TestChainedPluginsAreNotHandEdits: istio-cni and linkerd-cni chained onto
// Calico's list are set aside in the comparison, listed in the status, kept
// after the rendered plugins by every rewrite, and the installers' answer to
// that rewrite changes nothing: no fight.
func TestChainedPluginsAreNotHandEdits(t *testing.T) {
	tests := []struct {
		name      string
		policy    Policy
		dir       func(*Dir)
		edit      bool     // log_level edited by hand before the installers run
		chain     []string // installers, in the order they run
		moved     bool     // veth_mtu changes in the ConfigMap afterwards
		wantFound State
		wantPaths []string
		wantAct   Action
		wantAfter State // once the installers have answered the agent's write
	}{
		{name: "istio-cni inserted", policy: PolicyReport, chain: []string{"istio-cni"}, wantFound: InSync, wantAfter: InSync},
		{name: "linkerd-cni inserted", policy: PolicyEnforce, chain: []string{"linkerd-cni"}, wantFound: InSync, wantAfter: InSync},
		{name: "linkerd-cni then istio-cni", policy: PolicyEnforce, chain: []string{"linkerd-cni", "istio-cni"}, wantFound: InSync, wantAfter: InSync},
		{name: "ConfigMap change keeps istio-cni", policy: PolicyReport, chain: []string{"istio-cni"}, moved: true,
			wantFound: Outdated, wantPaths: []string{"plugins.0.mtu"}, wantAct: ActionWritten, wantAfter: InSync},
		{name: "ConfigMap change keeps linkerd-cni and istio-cni", policy: PolicyEnforce, chain: []string{"linkerd-cni", "istio-cni"}, moved: true,
			wantFound: Outdated, wantPaths: []string{"plugins.0.mtu"}, wantAct: ActionWritten, wantAfter: InSync},
		{name: "enforce restores a hand edit, keeps istio-cni", policy: PolicyEnforce, edit: true, chain: []string{"istio-cni"},
			wantFound: Drifted, wantPaths: []string{"plugins.0.log_level"}, wantAct: ActionRestored, wantAfter: InSync},
		{name: "enforce restores a hand edit, keeps linkerd-cni", policy: PolicyEnforce, edit: true, chain: []string{"linkerd-cni"},
			wantFound: Drifted, wantPaths: []string{"plugins.0.log_level"}, wantAct: ActionRestored, wantAfter: InSync},
		{name: "report keeps a hand edit; the paths do not name istio-cni", policy: PolicyReport, edit: true, chain: []string{"istio-cni"},
			wantFound: Drifted, wantPaths: []string{"plugins.0.log_level"}, wantAfter: Drifted},
		{name: "report keeps a hand edit; the paths do not name linkerd-cni", policy: PolicyReport, edit: true, chain: []string{"linkerd-cni"},
			wantFound: Drifted, wantPaths: []string{"plugins.0.log_level"}, wantAfter: Drifted},
		{name: "no chained types: istio-cni is an edit", policy: PolicyReport, dir: func(d *Dir) { d.ChainedTypes = []string{} },
			chain: []string{"istio-cni"}, wantFound: Drifted, wantPaths: []string{"plugins.2"}, wantAfter: Drifted},
		{name: "a list of its own replaces the defaults", policy: PolicyReport, dir: func(d *Dir) { d.ChainedTypes = []string{"linkerd-cni"} },
			chain: []string{"linkerd-cni", "istio-cni"}, wantFound: Drifted, wantPaths: []string{"plugins.2"}, wantAfter: Drifted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			d.Policy = tc.policy
			if tc.dir != nil {
				tc.dir(d)
			}
			want := desiredMTU(t, d.NetDir, "1400")
			mustSync(t, d, want)
			path := filepath.Join(d.NetDir, want.Conf().Name)
			if tc.edit {
				edited := strings.Replace(string(mustRead(t, path)), `"log_level": "info"`, `"log_level": "debug"`, 1)
				must(t, os.WriteFile(path, []byte(edited), 0o644))
			}
			for _, c := range tc.chain {
				installers[c](t, path)
			}
			if tc.moved {
				want = desiredMTU(t, d.NetDir, "1460")
			}
			chained := chainedIn(d, tc.chain)
			before := mustRead(t, path)

			st := mustSync(t, d, want)[0]
			if st.State != tc.wantFound || !slices.Equal(st.ChangedPaths, orEmpty(tc.wantPaths)) || st.Action != tc.wantAct {
				t.Fatalf("found %s %v, did %q; want %s %v, %q", st.State, st.ChangedPaths, st.Action, tc.wantFound, tc.wantPaths, tc.wantAct)
			}
			if !slices.Equal(st.Chained, chained) {
				t.Errorf("chained %v, want %v", st.Chained, chained)
			}
			js, err := json.Marshal(st)
			must(t, err)
			if len(chained) == 0 && strings.Contains(string(js), `"chained"`) {
				t.Errorf("status JSON lists chained plugins where there are none: %s", js)
			}
			if len(chained) > 0 && !strings.Contains(string(js), `"chained":["`+strings.Join(chained, `","`)+`"]`) {
				t.Errorf("status JSON does not list %v: %s", chained, js)
			}

			after := mustRead(t, path)
			if tc.wantAct == ActionNone {
				if string(after) != string(before) {
					t.Fatalf("the file was changed:\n%s", UnifiedDiff(before, after))
				}
			} else {
				checkKept(t, want.Conf(), after, tc.chain)
			}
			rec, err := LoadRecord(d.StateDir, d.NetDir, want.Conf().Name)
			if err != nil || rec == nil || rec.Written == nil {
				t.Fatalf("record: %+v %v", rec, err)
			}
			for _, p := range pluginsOf(rec.Written.Content) {
				if slices.Contains(tc.chain, pluginType(p)) {
					t.Errorf("the record holds a chained plugin: %s", rec.Written.Content)
				}
			}

			// The installers see the agent's file: istio-cni finds its
			// plugin; linkerd-cni rewrites the file in its own layout.
			for _, c := range tc.chain {
				installers[c](t, path)
			}
			st = mustSync(t, d, want)[0]
			if st.State != tc.wantAfter || st.Action != ActionNone {
				t.Fatalf("after the installers answered: %s %v, did %q; want %s and nothing done", st.State, st.ChangedPaths, st.Action, tc.wantAfter)
			}
			if tc.wantAfter == Drifted && !slices.Equal(st.ChangedPaths, tc.wantPaths) {
				t.Errorf("after the installers answered: paths %v, want %v", st.ChangedPaths, tc.wantPaths)
			}
		})
	}
}

// chainedIn is what FileStatus.Chained should list for these installers.
func chainedIn(d *Dir, chain []string) []string {
	var out []string
	for _, c := range chain {
		if slices.Contains(d.chainedTypes(), c) {
			out = append(out, c)
		}
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// checkKept: a rewritten file is the rendered list, then the chained
// plugins in the order their installers appended them, and loads in libcni.
func checkKept(t *testing.T, conf *File, got []byte, chain []string) {
	t.Helper()
	if err := ValidateConf(conf.Name, got); err != nil {
		t.Fatalf("rewritten file does not load: %v", err)
	}
	rendered, plugins := pluginsOf(conf.Content), pluginsOf(got)
	if len(plugins) != len(rendered)+len(chain) {
		t.Fatalf("%d plugins, want %d rendered and %v", len(plugins), len(rendered), chain)
	}
	if !reflect.DeepEqual(normalize(plugins[:len(rendered)]), normalize(rendered)) {
		t.Errorf("the rendered plugins are not first:\n%s", got)
	}
	for i, c := range chain {
		if !reflect.DeepEqual(normalize(plugins[len(rendered)+i]), normalize(chainEntry(t, c+".plugin.json"))) {
			t.Errorf("plugin %d is not %s's entry as its installer wrote it:\n%s", len(rendered)+i, c, got)
		}
	}
	if end, _, _, ok := pluginsEnd(conf.Content); !ok || !strings.HasPrefix(string(got), string(conf.Content[:end])) {
		t.Errorf("the rendered bytes were not kept as they are:\n%s", got)
	}
}

// TestStaleTokenKeepsChainedPlugins: a conflist holding the token (Calico
// v3.0) with linkerd-cni's entry first (as older linkerd-cni tests show it)
// and istio-cni's last: the token fields are found in Calico's plugin, a
// rotation rewrites the file keeping both, and the paths name the token.
func TestStaleTokenKeepsChainedPlugins(t *testing.T) {
	d := newTestDir(t)
	build := func(tok string) *Desired {
		in := goldenInputs(fixtureData(t, "calico-config-v3.0-kdd.yaml"), clusterEnv)
		in.NetDir, in.Token = d.NetDir, tok
		want, err := BuildDesired(in, "")
		must(t, err)
		return want
	}
	old := build(testToken)
	mustSync(t, d, old)
	path := filepath.Join(d.NetDir, old.Conf().Name)
	var doc map[string]any
	must(t, json.Unmarshal(mustRead(t, path), &doc))
	plugins := doc["plugins"].([]any)
	doc["plugins"] = append(append([]any{chainEntry(t, "linkerd-cni.plugin.json")}, plugins...), chainEntry(t, "istio-cni.plugin.json"))
	out, err := json.MarshalIndent(doc, "", "  ")
	must(t, err)
	must(t, os.WriteFile(path, out, 0o600))

	if st := confState(t, d, old); st.State != InSync || !slices.Equal(st.Chained, []string{"linkerd-cni", "istio-cni"}) {
		t.Fatalf("linkerd-cni first, istio-cni last: %s %v chained %v", st.State, st.ChangedPaths, st.Chained)
	}
	if got := d.TokensOnDisk(old); !slices.Equal(got, []string{testToken}) {
		t.Fatalf("tokens on disk: %d found, want the one token", len(got))
	}
	rotated := build("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdGVkIn0.rotated-signature")
	st := mustSync(t, d, rotated)[0]
	if st.State != StaleToken || st.Action != ActionRotated || !slices.Equal(st.ChangedPaths, []string{"plugins.0.policy.k8s_auth_token"}) {
		t.Fatalf("rotation: %s %v %q", st.State, st.ChangedPaths, st.Action)
	}
	checkKept(t, rotated.Conf(), mustRead(t, path), []string{"linkerd-cni", "istio-cni"})
	if st := confState(t, d, rotated); st.State != InSync {
		t.Fatalf("after the rotation: %s %v", st.State, st.ChangedPaths)
	}
}

// TestTemplateOwnsAChainedType: a plugin of a chained type that the
// template renders itself is Calico's own: compared, never set aside.
func TestTemplateOwnsAChainedType(t *testing.T) {
	d := newTestDir(t)
	in := &Inputs{Template: `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":__CNI_MTU__},{"type":"istio-cni","plugin_log_level":"info"}]}`,
		Env: mapEnv(nil), NodeName: "node-1", NetDir: d.NetDir, Token: testToken, CA: []byte(testCA), FileExists: func(string) bool { return false }}
	want, err := BuildDesired(in, "")
	must(t, err)
	mustSync(t, d, want)
	path := filepath.Join(d.NetDir, want.Conf().Name)
	edited := strings.Replace(string(mustRead(t, path)), `"plugin_log_level":"info"`, `"plugin_log_level":"debug"`, 1)
	must(t, os.WriteFile(path, []byte(edited), 0o600))
	if st := confState(t, d, want); st.State != Drifted || !slices.Equal(st.ChangedPaths, []string{"plugins.1.plugin_log_level"}) || st.Chained != nil {
		t.Fatalf("edited rendered istio-cni: %s %v chained %v", st.State, st.ChangedPaths, st.Chained)
	}
}

// TestMetaPluginConfigsDoNotShadow: multus's config sorting first delegates
// to Calico's, which is then not Shadowed; any other config sorting first
// (or between multus's and Calico's) still shadows it.
func TestMetaPluginConfigsDoNotShadow(t *testing.T) {
	multusWithLinkerd := func(t *testing.T) []byte {
		// linkerd-cni injects into every config in the directory, turning
		// multus's single config into a list whose first plugin is multus.
		return installerInsert(t, chainedFixture(t, "00-multus.conf"), chainEntry(t, "linkerd-cni.plugin.json"), false)
	}
	tests := []struct {
		name       string
		files      map[string]func(*testing.T) []byte
		link       string // a symlink of this name to the first file
		meta       []string
		setMeta    bool
		wantState  State
		shadowedBy string
	}{
		{name: "thin multus 00-multus.conf", files: map[string]func(*testing.T) []byte{"00-multus.conf": fixture("00-multus.conf")}, wantState: InSync},
		{name: "thin multus 00-multus.conflist", files: map[string]func(*testing.T) []byte{"00-multus.conflist": fixture("00-multus.conflist")}, wantState: InSync},
		{name: "thick multus-shim 00-multus.conf", files: map[string]func(*testing.T) []byte{"00-multus.conf": fixture("00-multus-shim.conf")}, wantState: InSync},
		{name: "multus with linkerd-cni chained into it", files: map[string]func(*testing.T) []byte{"00-multus.conflist": multusWithLinkerd}, wantState: InSync},
		{name: "a bridge list sorts first", files: map[string]func(*testing.T) []byte{"05-bridge.conflist": fixture("05-bridge.conflist")},
			wantState: Shadowed, shadowedBy: "05-bridge.conflist"},
		{name: "multus, then a bridge list, then Calico", files: map[string]func(*testing.T) []byte{
			"00-multus.conf": fixture("00-multus.conf"), "05-bridge.conflist": fixture("05-bridge.conflist")},
			wantState: Shadowed, shadowedBy: "05-bridge.conflist"},
		{name: "no meta types: multus shadows", files: map[string]func(*testing.T) []byte{"00-multus.conf": fixture("00-multus.conf")},
			setMeta: true, meta: []string{}, wantState: Shadowed, shadowedBy: "00-multus.conf"},
		{name: "a list of its own replaces the defaults", files: map[string]func(*testing.T) []byte{
			"00-meta.conf": literal(`{"cniVersion":"0.3.1","name":"meta","type":"example-meta"}`), "01-multus.conf": fixture("00-multus.conf")},
			setMeta: true, meta: []string{"example-meta"}, wantState: Shadowed, shadowedBy: "01-multus.conf"},
		{name: "a symlink is not read: it shadows", files: map[string]func(*testing.T) []byte{"multus.conf.orig": fixture("00-multus.conf")},
			link: "00-multus.conf", wantState: Shadowed, shadowedBy: "00-multus.conf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			if tc.setMeta {
				d.MetaTypes = tc.meta
			}
			want := desiredMTU(t, d.NetDir, "1400")
			mustSync(t, d, want)
			var first string
			for name, content := range tc.files {
				must(t, os.WriteFile(filepath.Join(d.NetDir, name), content(t), 0o644))
				first = name
			}
			if tc.link != "" {
				must(t, os.Symlink(first, filepath.Join(d.NetDir, tc.link)))
			}
			st := confState(t, d, want)
			if st.State != tc.wantState || (tc.shadowedBy != "" && !strings.HasPrefix(st.Message, tc.shadowedBy+" sorts before")) {
				t.Fatalf("%s %q, want %s by %q", st.State, st.Message, tc.wantState, tc.shadowedBy)
			}
		})
	}
}
