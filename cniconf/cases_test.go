package cniconf

import (
	"strings"
	"testing"
)

func TestInstallCNICases(t *testing.T) {
	v328 := fixtureData(t, "calico-config-v3.28-etcd.yaml")
	v332 := fixtureData(t, "calico-config-v3.32.yaml")
	v26 := fixtureData(t, "calico-config-v2.6-etcd.yaml")
	env := func(kv ...string) map[string]string {
		m := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name       string
		data       map[string]string
		env        map[string]string
		tls        map[string]bool
		confName   string
		wantName   string
		wantServer string
		insecure   bool
		contains   []string
	}{
		{name: "defaults", data: v332, env: env(), wantName: "10-calico.conflist", wantServer: "https://10.96.0.1:443",
			contains: []string{`"mtu": 0,`, `"nodename": "node-1"`}},
		{name: "env overrides", data: v332, env: env("CNI_MTU", "1440", "LOG_LEVEL", "debug"), wantName: "10-calico.conflist",
			wantServer: "https://10.96.0.1:443", contains: []string{`"mtu": 1440,`}},
		{name: "no veth_mtu falls back to 1500", data: map[string]string{"cni_network_config": v332["cni_network_config"]}, env: env(),
			wantName: "10-calico.conflist", wantServer: "https://10.96.0.1:443", contains: []string{`"mtu": 1500,`}},
		{name: "etcd TLS files present", data: v328, env: env("ETCD_ENDPOINTS", "https://10.0.0.1:2379"),
			tls: map[string]bool{"etcd-cert": true, "etcd-key": true, "etcd-ca": true}, wantName: "10-calico.conflist", wantServer: "https://10.96.0.1:443",
			contains: []string{`"etcd_cert_file": "/etc/cni/net.d/calico-tls/etcd-cert"`, `"etcd_key_file": "/etc/cni/net.d/calico-tls/etcd-key"`,
				`"etcd_ca_cert_file": "/etc/cni/net.d/calico-tls/etcd-ca"`, `"etcd_endpoints": "https://10.0.0.1:2379"`}},
		{name: "IPv6 host bracketed in the kubeconfig only", data: v26, env: map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
			wantName: "10-calico.conf", wantServer: "https://[fd00::1]:6443", contains: []string{`"k8s_api_root": "https://fd00::1:6443"`}},
		{name: "SKIP_TLS_VERIFY", data: v332, env: env("SKIP_TLS_VERIFY", "true"), wantName: "10-calico.conflist",
			wantServer: "https://10.96.0.1:443", insecure: true},
		{name: "CNI_CONF_NAME", data: v332, env: env(), confName: "05-calico.conflist", wantName: "05-calico.conflist", wantServer: "https://10.96.0.1:443"},
		{name: "protocol from env", data: v332, env: env("KUBERNETES_SERVICE_PROTOCOL", "http"), wantName: "10-calico.conflist", wantServer: "http://10.96.0.1:443"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := goldenInputs(tc.data, tc.env)
			in.FileExists = func(p string) bool { return tc.tls[p[strings.LastIndex(p, "/")+1:]] }
			want, err := BuildDesired(in, tc.confName)
			if err != nil {
				t.Fatalf("BuildDesired: %v", err)
			}
			conf := want.Conf()
			if conf.Name != tc.wantName {
				t.Errorf("name %q, want %q", conf.Name, tc.wantName)
			}
			ref := installCNIRender(tc.data["cni_network_config"], mergeEnv(tc.data, tc.env), "node-1", testToken, "/etc/cni/net.d", tc.tls)
			if string(conf.Content) != ref {
				t.Errorf("render differs from install-cni's:\n%s", UnifiedDiff([]byte(ref), conf.Content, testToken))
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(conf.Content), s) {
					t.Errorf("render lacks %s", s)
				}
			}
			if len(want.Files) != 2 {
				t.Fatalf("want conf and kubeconfig, got %d files", len(want.Files))
			}
			k, err := ParseKubeconfig(want.Files[1].Content)
			if err != nil {
				t.Fatal(err)
			}
			if k.Server != tc.wantServer || k.Insecure != tc.insecure || k.Token != testToken {
				t.Errorf("kubeconfig server %q insecure %v token-ok %v; want %q %v", k.Server, k.Insecure, k.Token == testToken, tc.wantServer, tc.insecure)
			}
			if !tc.insecure && string(k.CAData) != testCA {
				t.Errorf("kubeconfig CA not the input CA")
			}
		})
	}
}

// mergeEnv is what install-cni's environment holds: the ConfigMap keys the
// manifest maps into env, overridden by explicit env.
func mergeEnv(data, env map[string]string) map[string]string {
	m := map[string]string{"CNI_MTU": data["veth_mtu"], "ETCD_ENDPOINTS": data["etcd_endpoints"]}
	for k, v := range env {
		m[k] = v
	}
	return m
}

func TestBadInputs(t *testing.T) {
	v332 := fixtureData(t, "calico-config-v3.32.yaml")["cni_network_config"]
	v26 := fixtureData(t, "calico-config-v2.6-etcd.yaml")["cni_network_config"]
	tests := []struct {
		name, template, confName, token string
		env                             map[string]string
		noCA                            bool
		wantErr                         string
	}{
		{name: "invalid JSON", template: `{"name": "x",`, wantErr: "not a JSON object"},
		{name: "not an object", template: `["a"]`, wantErr: "not a JSON object"},
		{name: "empty object", template: `{}`, wantErr: "missing 'type'"},
		{name: "plugin without type", template: `{"name":"k","cniVersion":"0.3.1","plugins":[{"mtu":1}]}`, wantErr: "failed to parse plugin config 0: error parsing configuration: missing 'type'"},
		{name: "no plugins", template: `{"name":"k","cniVersion":"0.3.1","plugins":[]}`, wantErr: "no plugins"},
		{name: "unsupported cniVersion", template: `{"name":"k","cniVersion":"9.9.9","type":"calico"}`, wantErr: "not supported"},
		{name: "list in a .conf name", template: v332, confName: "10-calico.conf", wantErr: "use a .conflist name"},
		{name: "single config in a .conflist", template: v26, confName: "10-calico.conflist", wantErr: "single-plugin"},
		{name: "odd extension", template: v26, confName: "10-calico.yaml", wantErr: "must end in"},
		{name: "quote in a value", template: v26, env: map[string]string{"KUBERNETES_SERVICE_HOST": `10.0.0.1"`}, wantErr: `env KUBERNETES_SERVICE_HOST value "10.0.0.1\"" for __KUBERNETES_SERVICE_HOST__ contains '"'`},
		{name: "newline in a value", template: v332, env: map[string]string{"CNI_MTU": "1500\n"}, wantErr: "CNI_MTU"},
		{name: "backslash in the token", template: v26, token: `abc\def-0123456789`, wantErr: "the service-account token for __SERVICEACCOUNT_TOKEN__ contains"},
		{name: "token not UTF-8, in the conf", template: v26, token: "abc\xff\xfedef-0123456789", wantErr: "the service-account token for __SERVICEACCOUNT_TOKEN__ is not valid UTF-8"},
		{name: "token not UTF-8, in the kubeconfig", template: v332, token: "abc\xff\xfedef-0123456789", wantErr: "the service-account token for the calico-kubeconfig's token is not valid UTF-8"},
		{name: "MTU not a number", template: v332, env: map[string]string{"CNI_MTU": "abc"}, wantErr: `env CNI_MTU value "abc" for __CNI_MTU__ is not a number`},
		{name: "MTU set empty", template: v332, env: map[string]string{"CNI_MTU": ""}, wantErr: `env CNI_MTU value "" for __CNI_MTU__ is not a number`},
		{name: "unfilled manifest placeholder", template: fixtureData(t, "calico-config-v3.28-etcd.yaml")["cni_network_config"],
			env: map[string]string{"ETCD_ENDPOINTS": "http://<ETCD_IP>:<ETCD_PORT>"}, wantErr: `env ETCD_ENDPOINTS value "http://<ETCD_IP>:<ETCD_PORT>" for __ETCD_ENDPOINTS__ still holds the placeholder <ETCD_IP>`},
		{name: "no CA", template: v332, noCA: true, wantErr: "--ca-file"},
		{name: "empty template", template: "  ", wantErr: "empty or missing"},
		{name: "token outside a string", template: `{"name":"k","cniVersion":"0.3.1","type":"calico","t":__SERVICEACCOUNT_TOKEN__}`, token: "12345678", wantErr: "outside any JSON string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
			for k, v := range tc.env {
				env[k] = v
			}
			in := goldenInputs(map[string]string{"cni_network_config": tc.template}, env)
			if tc.token != "" {
				in.Token = tc.token
			}
			if tc.noCA {
				in.CA = nil
			}
			_, err := BuildDesired(in, tc.confName)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), in.Token) {
				t.Errorf("error shows the token")
			}
		})
	}
}
