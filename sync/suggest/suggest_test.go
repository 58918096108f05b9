package suggest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

const installsDir = "../../test/testdata/fixtures/installs"

// resolved is a fixture's install-cni environment, as the agent resolves it;
// annotations, when given, are set on every ConfigMap of the fixture first.
func resolved(t *testing.T, fixture string, annotations ...map[string]string) *installcni.Resolved {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(installsDir, fixture))
	if err != nil {
		t.Fatal(err)
	}
	m, err := installcni.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.ConfigMaps {
		for _, a := range annotations {
			m.ConfigMaps[i].Annotations = a
		}
	}
	ds, err := m.FindDaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}[k]
		return v, ok
	}
	r, err := installcni.Resolve(installcni.Request{DaemonSet: ds, NodeName: "node-1", AgentEnv: env}, m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// request renders the fixture's template and edits the result as a person
// would.
func request(t *testing.T, fixture string, operator bool, edit func(m map[string]any), annotations ...map[string]string) Request {
	t.Helper()
	r := resolved(t, fixture, annotations...)
	desired, err := cniconf.RenderTemplate(&cniconf.Inputs{
		Template: r.Template, Env: func(k string) (string, bool) { v, ok := r.Env[k]; return v, ok },
		NodeName: "node-1", NetDir: "/etc/cni/net.d", FileExists: func(string) bool { return false },
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(desired, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	disk, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var d, k any
	_ = json.Unmarshal(desired, &d)
	_ = json.Unmarshal(disk, &k)
	return Request{Kind: cniconf.KindConf, Template: r.Template, Desired: desired, Disk: disk, Changed: cniconf.ChangedPaths(d, k),
		Origins: r.Origins, DaemonSet: r.DaemonSet, Container: r.Container, Operator: operator}
}

func calico(m map[string]any) map[string]any { return m["plugins"].([]any)[0].(map[string]any) }

func TestFor(t *testing.T) {
	cases := []struct {
		name     string
		fixture  string
		operator bool
		edit     func(m map[string]any)
		want     cniconf.Suggestion // Reason is checked to be set, Command by its prefix
	}{
		{"mtu from calico-config", "manifest-v3.32.yaml", false, func(m map[string]any) { calico(m)["mtu"] = 1400 },
			cniconf.Suggestion{Path: "plugins.0.mtu", Kind: KindConfigMapKey, Target: "kube-system/configmap/calico-config", Key: "veth_mtu", Value: "1400",
				Command: `kubectl patch configmap calico-config -n kube-system --type merge -p '{"data":{"veth_mtu":"1400"}}'`}},
		{"log level in the template", "manifest-v3.32.yaml", false, func(m map[string]any) { calico(m)["log_level"] = "debug" },
			cniconf.Suggestion{Path: "plugins.0.log_level", Kind: KindTemplate, Target: "kube-system/configmap/calico-config", Key: "cni_network_config", Value: "debug",
				Command: `kubectl patch configmap calico-config -n kube-system --type merge -p '{"data":{"cni_network_config":"{\n`}},
		{"node name is computed", "manifest-v3.32.yaml", false, func(m map[string]any) { calico(m)["nodename"] = "other" },
			cniconf.Suggestion{Path: "plugins.0.nodename", Kind: KindNone}},
		{"operator mtu", "operator-v3.32.yaml", true, func(m map[string]any) { calico(m)["mtu"] = 1400 },
			cniconf.Suggestion{Path: "plugins.0.mtu", Kind: KindInstallation, Target: "installation/default", Key: "spec.calicoNetwork.mtu", Value: "1400",
				Command: `kubectl patch installation default --type merge -p '{"spec":{"calicoNetwork":{"mtu":1400}}}'`}},
		{"operator log level", "operator-v3.32.yaml", true, func(m map[string]any) { calico(m)["log_level"] = "debug" },
			cniconf.Suggestion{Path: "plugins.0.log_level", Kind: KindInstallation, Target: "installation/default", Key: "spec.logging.cni.logSeverity", Value: "Debug",
				Command: `kubectl patch installation default --type merge -p '{"spec":{"logging":{"cni":{"logSeverity":"Debug"}}}}'`}},
		{"operator log size", "operator-v3.32.yaml", true, func(m map[string]any) { calico(m)["log_file_max_size"] = 50 },
			cniconf.Suggestion{Path: "plugins.0.log_file_max_size", Kind: KindInstallation, Key: "spec.logging.cni.logFileMaxSize", Value: "50Mi",
				Target: "installation/default", Command: `kubectl patch installation default --type merge -p '{"spec":{"logging":{"cni":{"logFileMaxSize":"50Mi"}}}}'`}},
		{"operator ip forwarding", "operator-v3.32.yaml", true, func(m map[string]any) { calico(m)["container_settings"] = map[string]any{"allow_ip_forwarding": true} },
			cniconf.Suggestion{Path: "plugins.0.container_settings.allow_ip_forwarding", Kind: KindInstallation, Target: "installation/default",
				Key: "spec.calicoNetwork.containerIPForwarding", Value: "Enabled", Command: `kubectl patch installation default`}},
		{"operator portmap removed", "operator-v3.32.yaml", true, func(m map[string]any) { m["plugins"] = m["plugins"].([]any)[:1] },
			cniconf.Suggestion{Path: "plugins.1", Kind: KindInstallation, Target: "installation/default", Key: "spec.calicoNetwork.hostPorts", Value: "Disabled",
				Command: `kubectl patch installation default --type merge -p '{"spec":{"calicoNetwork":{"hostPorts":"Disabled"}}}'`}},
		{"operator has no field", "operator-v3.32.yaml", true, func(m map[string]any) { calico(m)["ipam"].(map[string]any)["assign_ipv6"] = "true" },
			cniconf.Suggestion{Path: "plugins.0.ipam.assign_ipv6", Kind: KindNone}},
		{"operator bandwidth added", "operator-v3.32.yaml", true, func(m map[string]any) {
			m["plugins"] = append(m["plugins"].([]any), map[string]any{"type": "bandwidth"})
		}, cniconf.Suggestion{Path: "plugins.2", Kind: KindNone}},
		// The operator renders cniVersion from spec.cni.specVersion: 1.0.0
		// (Auto) on master, 0.3.1 before the field.
		{"operator cniVersion down from 1.0.0", "operator-master.yaml", true, func(m map[string]any) { m["cniVersion"] = "0.4.0" },
			cniconf.Suggestion{Path: "cniVersion", Kind: KindInstallation, Target: "installation/default", Key: "spec.cni.specVersion", Value: "0.4.0",
				Command: `kubectl patch installation default --type merge -p '{"spec":{"cni":{"specVersion":"0.4.0"}}}'`}},
		{"operator cniVersion up to 1.0.0", "operator-v3.32.yaml", true, func(m map[string]any) { m["cniVersion"] = "1.0.0" },
			cniconf.Suggestion{Path: "cniVersion", Kind: KindInstallation, Target: "installation/default", Key: "spec.cni.specVersion", Value: "1.0.0",
				Command: `kubectl patch installation default --type merge -p '{"spec":{"cni":{"specVersion":"1.0.0"}}}'`}},
		{"operator cniVersion the field cannot hold", "operator-master.yaml", true, func(m map[string]any) { m["cniVersion"] = "1.1.0" },
			cniconf.Suggestion{Path: "cniVersion", Kind: KindNone}},
		{"operator cniVersion removed", "operator-master.yaml", true, func(m map[string]any) { delete(m, "cniVersion") },
			cniconf.Suggestion{Path: "cniVersion", Kind: KindNone}},
		{"manifest cniVersion in the template", "manifest-v3.32.yaml", false, func(m map[string]any) { m["cniVersion"] = "1.0.0" },
			cniconf.Suggestion{Path: "cniVersion", Kind: KindTemplate, Target: "kube-system/configmap/calico-config", Key: "cni_network_config", Value: "1.0.0",
				Command: `kubectl patch configmap calico-config -n kube-system --type merge -p '{"data":{"cni_network_config":"{\n`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := For(request(t, c.fixture, c.operator, c.edit))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Suggestions) != 1 {
				t.Fatalf("%d suggestions, want 1: %+v", len(res.Suggestions), res.Suggestions)
			}
			got, want := res.Suggestions[0], c.want
			if got.Reason == "" {
				t.Error("no reason")
			}
			if !strings.HasPrefix(got.Command, want.Command) || (want.Command == "") != (got.Command == "") {
				t.Errorf("command %q, want %q", got.Command, want.Command)
			}
			got.Reason, got.Command, want.Command = "", "", ""
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// An env literal on the DaemonSet is changed there; a variable the agent
// cannot see (source configmap) is named, not guessed.
func TestForVariables(t *testing.T) {
	req := request(t, "manifest-v3.32.yaml", false, func(m map[string]any) { calico(m)["mtu"] = 9000 })
	req.Origins = map[string]installcni.Origin{"CNI_MTU": {Kind: installcni.OriginValue}}
	res, err := For(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `kubectl set env daemonset/calico-node -n kube-system -c install-cni CNI_MTU=9000`
	if s := res.Suggestions[0]; s.Kind != KindDaemonSetEnv || s.Command != want || s.Target != "kube-system/daemonset/calico-node" || res.Env["CNI_MTU"] != "9000" {
		t.Errorf("got %+v, env %v", s, res.Env)
	}
	req.DaemonSet, req.Origins = "", nil
	if res, err = For(req); err != nil || res.Suggestions[0].Kind != KindNone || !strings.Contains(res.Suggestions[0].Reason, "CNI_MTU") {
		t.Errorf("source configmap: %+v, %v", res.Suggestions, err)
	}
}

// A kubeconfig and a file mode are not template values.
func TestForNoTemplate(t *testing.T) {
	res, err := For(Request{Kind: cniconf.KindKubeconfig, Changed: []string{"clusters.0.cluster.server", "mode"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Suggestions) != 2 || res.Actionable() {
		t.Fatalf("%+v", res.Suggestions)
	}
	for _, s := range res.Suggestions {
		if s.Kind != KindNone || s.Reason == "" {
			t.Errorf("%+v", s)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"CNI_MTU=1400":  "CNI_MTU=1400",
		`{"a":"b"}`:     `'{"a":"b"}'`,
		"it's":          `'it'\''s'`,
		"LOG_LEVEL=a b": `'LOG_LEVEL=a b'`,
		"":              "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// A hand edit that writes a token into the conf outside its placeholder
// (here: "Bearer " removed) is no lasting change, and nothing printed
// carries the token.
func TestForKeepsTokensOut(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"
	tmpl := `{"name":"k","cniVersion":"0.1.0","type":"calico","policy":{"type":"k8s","k8s_auth_token":"Bearer __SERVICEACCOUNT_TOKEN__"}}`
	desired := strings.Replace(tmpl, "__SERVICEACCOUNT_TOKEN__", token, 1)
	disk := strings.Replace(desired, "Bearer "+token, token, 1)
	for _, tokens := range [][]string{{token}, nil} { // known, and only JWT-shaped
		res, err := For(Request{Kind: cniconf.KindConf, Template: tmpl, Desired: []byte(desired), Disk: []byte(disk),
			Changed: []string{"policy.k8s_auth_token"}, DaemonSet: "kube-system/calico-node", Container: "install-cni",
			Origins: map[string]installcni.Origin{TemplateVar: {Kind: installcni.OriginConfigMapKey, ConfigMap: "kube-system/calico-config", Key: "cni_network_config"}},
			Tokens:  tokens})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Suggestions) != 1 || res.Suggestions[0].Kind != KindNone {
			t.Errorf("tokens %v: %+v", tokens, res.Suggestions)
		}
		for _, s := range res.Suggestions {
			if strings.Contains(s.Value+s.Command+s.Reason, token) {
				t.Errorf("a suggestion carries the token: %+v", s)
			}
		}
	}
}

// A cni-config under the operator's ignore annotation no longer follows the
// Installation: every edit is kept in cni-config's template, and the reason
// says so and names the Installation field it would need once the
// annotation is gone. The annotation with any value but "true" changes
// nothing.
func TestForOperatorIgnoredConfigMap(t *testing.T) {
	edit := func(m map[string]any) {
		m["cniVersion"] = "0.4.0"
		calico(m)["mtu"] = 1400
		calico(m)["ipam"].(map[string]any)["assign_ipv6"] = "true"
	}
	ignored := map[string]string{installcni.OperatorIgnoreAnnotation: "true"}
	res, err := For(request(t, "operator-master.yaml", true, edit, ignored))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Suggestions) != 3 {
		t.Fatalf("%d suggestions, want 3: %+v", len(res.Suggestions), res.Suggestions)
	}
	fields := map[string]string{"cniVersion": "spec.cni.specVersion is 0.4.0", "plugins.0.mtu": "spec.calicoNetwork.mtu is 1400", "plugins.0.ipam.assign_ipv6": ""}
	for _, s := range res.Suggestions {
		if s.Kind != KindTemplate || s.Target != "calico-system/configmap/cni-config" || s.Key != "config" {
			t.Errorf("%s: %+v, want the template in key config of calico-system/configmap/cni-config", s.Path, s)
		}
		if !strings.Contains(s.Reason, `carries unsupported.operator.tigera.io/ignore: "true"`) || !strings.Contains(s.Reason, "no longer follows the Installation") {
			t.Errorf("%s: reason %q does not say that cni-config no longer follows the Installation", s.Path, s.Reason)
		}
		field, ok := fields[s.Path]
		if !ok {
			t.Errorf("unexpected path %s", s.Path)
		}
		if field != "" && !strings.Contains(s.Reason, field) {
			t.Errorf("%s: reason %q does not name %q", s.Path, s.Reason, field)
		}
		if !strings.HasPrefix(s.Command, "kubectl patch configmap cni-config -n calico-system --type merge -p ") {
			t.Errorf("%s: command %q", s.Path, s.Command)
		}
	}
	var tmpl map[string]any
	if err := json.Unmarshal([]byte(res.Template), &tmpl); err != nil {
		t.Fatalf("the template to install is no JSON: %v\n%s", err, res.Template)
	}
	if tmpl["cniVersion"] != "0.4.0" || calico(tmpl)["mtu"] != float64(1400) {
		t.Errorf("the template to install lacks the edits: %s", res.Template)
	}

	res, err = For(request(t, "operator-master.yaml", true, edit, map[string]string{installcni.OperatorIgnoreAnnotation: "false"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Suggestions {
		if s.Kind == KindTemplate || strings.Contains(s.Reason, installcni.OperatorIgnoreAnnotation) {
			t.Errorf("annotation not \"true\": %+v, want the Installation's suggestion", s)
		}
	}
}
