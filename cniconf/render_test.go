package cniconf

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

// Fixed inputs for golden renders. The token is a made-up JWT-shaped string.
const (
	testToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLW5vZGUifQ.dGVzdC1zaWduYXR1cmU"
	testCA    = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
)

// fixtureDir holds the real Calico ConfigMaps the tests render, copied into
// the repository with their provenance (test/testdata/fixtures/README.md).
func fixtureDir(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "test", "testdata", "fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fixtureData reads the data of a ConfigMap manifest.
func fixtureData(t testing.TB, name string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	// Calico's etcd manifest leaves etcd_endpoints for the operator to
	// fill in ("http://<ETCD_IP>:<ETCD_PORT>"), and a render refuses the
	// placeholder; fill it as an operator would.
	if strings.Contains(cm.Data["etcd_endpoints"], "<ETCD_IP>") {
		cm.Data["etcd_endpoints"] = "https://10.0.0.1:2379"
	}
	return cm.Data
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func goldenInputs(data map[string]string, env map[string]string) *Inputs {
	return &Inputs{
		Template: data["cni_network_config"], Env: mapEnv(env), NodeName: "node-1",
		NetDir: "/etc/cni/net.d", VethMTU: data["veth_mtu"], EtcdEndpoints: data["etcd_endpoints"],
		Token: testToken, CA: []byte(testCA), FileExists: func(string) bool { return false },
	}
}

var clusterEnv = map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

// installCNIRender is Calico install-cni's writeCNIConfig, step for step:
// the reference the renderer must match byte for byte.
func installCNIRender(tmpl string, env map[string]string, node, token, netDir string, tls map[string]bool) string {
	get := func(k, def string) string {
		if v := env[k]; v != "" {
			return v
		}
		return def
	}
	r := func(ph, v string) { tmpl = strings.ReplaceAll(tmpl, ph, v) }
	r("__LOG_LEVEL__", get("LOG_LEVEL", "info"))
	r("__LOG_FILE_PATH__", get("LOG_FILE_PATH", "/var/log/calico/cni/cni.log"))
	r("__LOG_FILE_MAX_SIZE__", get("LOG_FILE_MAX_SIZE", "100"))
	r("__LOG_FILE_MAX_AGE__", get("LOG_FILE_MAX_AGE", "30"))
	r("__LOG_FILE_MAX_COUNT__", get("LOG_FILE_MAX_COUNT", "10"))
	r("__DATASTORE_TYPE__", get("DATASTORE_TYPE", "kubernetes"))
	r("__KUBERNETES_NODE_NAME__", node)
	r("__KUBECONFIG_FILEPATH__", netDir+"/calico-kubeconfig")
	r("__KUBECONFIG_FILENAME__", "calico-kubeconfig")
	r("__CNI_MTU__", get("CNI_MTU", "1500"))
	r("__KUBERNETES_SERVICE_HOST__", get("KUBERNETES_SERVICE_HOST", ""))
	r("__KUBERNETES_SERVICE_PORT__", get("KUBERNETES_SERVICE_PORT", ""))
	r("__SERVICEACCOUNT_TOKEN__", token)
	for _, f := range []struct{ ph, file string }{{"__ETCD_CERT_FILE__", "etcd-cert"}, {"__ETCD_CA_CERT_FILE__", "etcd-ca"}, {"__ETCD_KEY_FILE__", "etcd-key"}} {
		v := ""
		if tls[f.file] {
			v = netDir + "/calico-tls/" + f.file
		}
		r(f.ph, v)
	}
	r("__ETCD_ENDPOINTS__", get("ETCD_ENDPOINTS", ""))
	r("__ETCD_DISCOVERY_SRV__", get("ETCD_DISCOVERY_SRV", ""))
	r("__CALICO_API_GROUP__", get("CALICO_API_GROUP", "crd.projectcalico.org/v1"))
	r("__REQUIRE_MTU_FILE__", get("REQUIRE_MTU_FILE", "false"))
	return tmpl
}

func TestGoldenFixtures(t *testing.T) {
	fixtures, err := filepath.Glob(filepath.Join(fixtureDir(t), "calico-config-*.yaml"))
	if err != nil || len(fixtures) != 7 {
		t.Fatalf("want the 7 fixture ConfigMaps, got %d (%v)", len(fixtures), err)
	}
	for _, path := range fixtures {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			data := fixtureData(t, filepath.Base(path))
			want, err := BuildDesired(goldenInputs(data, clusterEnv), "")
			if err != nil {
				t.Fatalf("BuildDesired: %v", err)
			}
			for _, f := range want.Files {
				checkGolden(t, filepath.Join("testdata", "golden", name+"."+f.Name), f.Content)
			}
			// install-cni takes veth_mtu and etcd_endpoints through its env.
			env := map[string]string{"CNI_MTU": data["veth_mtu"], "ETCD_ENDPOINTS": data["etcd_endpoints"]}
			for k, v := range clusterEnv {
				env[k] = v
			}
			ref := installCNIRender(data["cni_network_config"], env, "node-1", testToken, "/etc/cni/net.d", nil)
			if got := string(want.Conf().Content); got != ref {
				t.Errorf("render differs from install-cni's:\n got: %s\nwant: %s", Redact(got), Redact(ref))
			}
		})
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cniconf -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./cniconf -update after review):\n%s", path, UnifiedDiff(want, got, testToken))
	}
}
