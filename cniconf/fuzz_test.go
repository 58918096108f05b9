package cniconf

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func fixedTime(i int) time.Time { return time.Date(2026, 1, 2, 3, 4, i, 0, time.UTC) }

func FuzzRenderTemplate(f *testing.F) {
	f.Add(`{"name":"k","cniVersion":"0.3.1","type":"calico","mtu":__CNI_MTU__,"t":"__SERVICEACCOUNT_TOKEN__"}`, "1500", "node-1")
	f.Add(`{"name":"k","plugins":[{"type":"calico","nodename":"__KUBERNETES_NODE_NAME__"}]}`, "0", "n\"")
	f.Add(`{"a":"__LOG_LEVEL__"}`, "x", "")
	f.Fuzz(func(t *testing.T, tmpl, mtu, node string) {
		in := &Inputs{Template: tmpl, Env: mapEnv(map[string]string{"CNI_MTU": mtu}), NodeName: node,
			NetDir: "/etc/cni/net.d", Token: testToken, FileExists: func(string) bool { return false }}
		out, err := RenderTemplate(in)
		if err != nil {
			return
		}
		var obj map[string]any
		if json.Unmarshal(out, &obj) != nil {
			t.Fatalf("render returned invalid JSON without an error: %q", out)
		}
		if _, err := learnTokenFields(in); err != nil && strings.Contains(tmpl, TokenPlaceholder) && !strings.Contains(err.Error(), "outside") {
			t.Fatalf("token fields: %v", err)
		}
	})
}

// Tokens that are no JWT, which only the token list and the token fields
// hide: the one the render puts in the conf, and an older one on disk.
const (
	plainToken    = "plain-token-0123456789abcdef"
	plainOldToken = "plain-old-token-fedcba9876543210"
)

// plainOldInField matches plainOldToken as a conf's token field holds it.
var plainOldInField = regexp.MustCompile(`"k8s_auth_token"\s*:\s*"(?:Bearer )?` + regexp.QuoteMeta(plainOldToken))

// FuzzClassify: whatever is on disk, the classification is consistent, a
// rewrite that keeps chained plugins is in sync, and the diff a status
// shows holds neither the desired token nor the token of a token field on
// disk, JWT or not.
func FuzzClassify(f *testing.F) {
	in := &Inputs{Template: `{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","policy":{"k8s_auth_token":"Bearer __SERVICEACCOUNT_TOKEN__"}}]}`,
		NetDir: "/etc/cni/net.d", Token: plainToken, FileExists: func(string) bool { return false }}
	want, err := BuildDesired(in, "")
	if err != nil {
		f.Fatal(err)
	}
	conf := (&Dir{}).chainedView(want.Conf())
	snap, err := snapshotOf(conf, fixedTime(0))
	if err != nil {
		f.Fatal(err)
	}
	rec := &Record{Written: snap}
	f.Add(conf.Content, true)
	f.Add([]byte(`{"name":"k","plugins":[{"type":"calico","policy":{"k8s_auth_token":"Bearer old"}}]}`), false)
	f.Add([]byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","policy":{"k8s_auth_token":"Bearer `+plainOldToken+`"}}]}`), true)
	f.Add([]byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","policy":{"k8s_auth_token": "`+plainOldToken+`"}}]`), true)
	f.Add([]byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","policy":{"k8s_auth_token":"Bearer `+testToken+`"}}]}`), false)
	f.Add([]byte(`{"name": "k", "plugins": [1, 2]}`), true)
	f.Add([]byte(`not json`), true)
	f.Add([]byte(`{"name":"k","plugins":[{"type":"linkerd-cni"},{"type":"calico","policy":{"k8s_auth_token":"Bearer old"}},{"type":"istio-cni","ipam":{}}]}`), true)
	if istio, err := appendPlugins(conf.Content, []any{map[string]any{"type": "istio-cni", "name": "istio-cni"}}); err == nil {
		f.Add(istio, true)
	}
	f.Fuzz(func(t *testing.T, disk []byte, withRecord bool) {
		r := rec
		if !withRecord {
			r = nil
		}
		j := classify(disk, true, conf, r)
		if j.state.Severity() < 0 {
			t.Fatalf("unknown state %q", j.state)
		}
		if j.state == InSync && len(j.changed) != 0 {
			t.Fatalf("InSync with changed paths %v", j.changed)
		}
		if len(j.chained) > 0 {
			// What a rewrite writes is the render with the chained plugins
			// kept: in sync, and still holding them.
			kept := classify(j.keepChained(conf.Content), true, conf, r)
			if kept.state != InSync || !slices.Equal(chainedNames(kept.chained), chainedNames(j.chained)) {
				t.Fatalf("render with chained %v kept: %s %v chained %v", chainedNames(j.chained), kept.state, kept.changed, chainedNames(kept.chained))
			}
		}
		if merged, ok := mergeToken(disk, conf); ok {
			var obj map[string]any
			if json.Unmarshal(merged, &obj) != nil {
				t.Fatal("merge produced invalid JSON")
			}
		}
		shown := conf.diff("/etc/cni/net.d/"+conf.Name, disk, true, j, plainToken)
		if strings.Contains(shown, plainToken) {
			t.Fatal("the diff shows the desired token")
		}
		if n := strings.Count(string(disk), plainOldToken); n > 0 && len(plainOldInField.FindAllIndex(disk, -1)) == n && strings.Contains(shown, plainOldToken) {
			t.Fatalf("the diff shows the token of a token field on disk:\n%s", shown)
		}
	})
}

func FuzzAppendPlugins(f *testing.F) {
	f.Add([]byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico"}]}`))
	f.Add([]byte("{\"plugins\": [\n    {\"type\": \"calico\"},\n    {\"type\": \"portmap\"}\n  ], \"name\": \"k\"}"))
	f.Add([]byte(`{"plugins":[],"plugins":{"type":"x"}}`))
	f.Add([]byte(`{"name":"k","type":"calico"}`))
	entry := map[string]any{"type": "istio-cni", "name": "istio-cni", "ipam": map[string]any{}}
	f.Fuzz(func(t *testing.T, conf []byte) {
		out, err := appendPlugins(conf, []any{entry})
		if err != nil || !json.Valid(conf) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("appending to valid JSON gave invalid JSON: %q", out)
		}
		if _, chained := setAside(out, []string{"istio-cni"}); len(chained) == 0 {
			t.Fatalf("the appended plugin is not found in %q", out)
		}
	})
}

// FuzzTraceEdits: whatever is on disk, tracing it never fails on valid JSON
// and, when every edit is literal, the merged template renders back to the
// file on disk: the lasting change a suggestion installs is the edit.
func FuzzTraceEdits(f *testing.F) {
	in := &Inputs{Template: `{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":__CNI_MTU__,"nodename":"__KUBERNETES_NODE_NAME__","log_level":"info"},{"type":"portmap","snat":true}]}`,
		Env: mapEnv(map[string]string{"CNI_MTU": "1500"}), NodeName: "node-1", NetDir: "/etc/cni/net.d", FileExists: func(string) bool { return false }}
	desired, err := RenderTemplate(in)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(desired)
	f.Add([]byte(`{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":1500,"nodename":"node-1","log_level":"debug"}]}`))
	f.Add([]byte(`{"name":"k","cniVersion":"1.0.0","plugins":[{"type":"bandwidth"},{"type":"calico","mtu":1500,"nodename":"node-1"},{"type":"portmap","snat":false}]}`))
	f.Add([]byte(`{"name":"k","plugins":{"a":1}}`))
	f.Fuzz(func(t *testing.T, disk []byte) {
		var obj map[string]any
		if json.Unmarshal(disk, &obj) != nil {
			return
		}
		tr, err := TraceEdits(in.Template, desired, disk, nil)
		if err != nil {
			t.Fatalf("TraceEdits on a JSON object: %v", err)
		}
		if tr.Template == "" || slices.ContainsFunc(tr.Edits, func(e TracedEdit) bool { return e.Placeholder != "" }) {
			return
		}
		again := *in
		again.Template = tr.Template
		out, err := RenderTemplate(&again)
		if err != nil {
			t.Fatalf("the merged template does not render: %v\n%s", err, tr.Template)
		}
		var got, want any
		_ = json.Unmarshal(out, &got)
		_ = json.Unmarshal(disk, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the merged template renders\n%s\nnot the file\n%s", out, disk)
		}
	})
}
