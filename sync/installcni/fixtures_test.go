package installcni

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// installsDir holds real Calico installs; its README.md gives, for each
// DaemonSet, the install-cni environment the expectations below restate.
const installsDir = "../../test/testdata/fixtures/installs"

// agentEnv is the agent pod's own environment in these tests: what the
// kubelet injects for the default/kubernetes Service on a kubeadm cluster.
func agentEnv(name string) (string, bool) {
	v, ok := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}[name]
	return v, ok
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(installsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parseFixture(t testing.TB, name string) *Manifest {
	t.Helper()
	m, err := ParseManifest(readFixture(t, name))
	if err != nil {
		t.Fatalf("ParseManifest(%s): %v", name, err)
	}
	return m
}

type fixtureWant struct {
	file      string
	daemonSet string
	// env is install-cni's environment but CNI_NETWORK_CONFIG, which is
	// checked against template ("namespace/name:key" of a ConfigMap).
	env         map[string]string
	template    string
	configMaps  []string
	absent      []string
	account     string
	accountFrom AccountSource
	manageCNI   bool
}

// kubelet-injected, from the agent's environment.
const svcHost, svcPort = "10.96.0.1", "443"

var fixtureWants = []fixtureWant{
	{
		file: "manifest-v2.6.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"ETCD_ENDPOINTS":          "http://127.0.0.1:2379",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		account:    "calico-node", accountFrom: AccountFromPodSpec,
		// CALICO_MANAGE_CNI is unset; v2.6 has no token watcher, which the
		// caller learns from the token in the conf.
		manageCNI: true,
	},
	{
		file: "manifest-v2.6-kdd.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"KUBERNETES_NODE_NAME":    "node-1",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		account:    "calico-node", accountFrom: AccountFromPodSpec,
		manageCNI: true,
	},
	{
		file: "manifest-v3.24.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "KUBERNETES_NODE_NAME": "node-1", "CNI_MTU": "0", "SLEEP": "false",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		absent:     []string{"kube-system/kubernetes-services-endpoint"},
		// No calico-cni-plugin in v3.24: the token is calico-node's.
		account: "calico-node", accountFrom: AccountFromPodSpec,
		manageCNI: true,
	},
	{
		file: "manifest-v3.26.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "KUBERNETES_NODE_NAME": "node-1", "CNI_MTU": "0", "SLEEP": "false",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		absent:     []string{"kube-system/kubernetes-services-endpoint"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
	{
		file: "manifest-v3.28-etcd.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "ETCD_ENDPOINTS": "http://<ETCD_IP>:<ETCD_PORT>", "CNI_MTU": "0", "SLEEP": "false",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		absent:     []string{"kube-system/kubernetes-services-endpoint"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
	{
		file: "manifest-v3.32.yaml", daemonSet: "kube-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "KUBERNETES_NODE_NAME": "node-1", "CNI_MTU": "0", "SLEEP": "false",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/calico-config:cni_network_config",
		configMaps: []string{"kube-system/calico-config"},
		absent:     []string{"kube-system/kubernetes-services-endpoint"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
	{
		file: "canal-v3.32.yaml", daemonSet: "kube-system/canal",
		env: map[string]string{
			"CALICO_CNI_SERVICE_ACCOUNT": "canal", "CNI_CONF_NAME": "10-canal.conflist",
			"KUBERNETES_NODE_NAME": "node-1", "CNI_MTU": "0", "SLEEP": "false",
			"KUBERNETES_SERVICE_HOST": svcHost, "KUBERNETES_SERVICE_PORT": svcPort,
		},
		template:   "kube-system/canal-config:cni_network_config",
		configMaps: []string{"kube-system/canal-config"},
		absent:     []string{"kube-system/kubernetes-services-endpoint"},
		// calico-cni-plugin exists too, but canal names its own account.
		account: "canal", accountFrom: AccountFromInstallCNIEnv,
		manageCNI: true,
	},
	{
		file: "operator-v3.32.yaml", daemonSet: "calico-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "SLEEP": "false", "CNI_NET_DIR": "/etc/cni/net.d",
			"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
		},
		template:   "calico-system/cni-config:config",
		configMaps: []string{"calico-system/cni-config"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
	{
		// The operator's literals win over the kubelet's (the agent's) values.
		file: "operator-v3.32-with-services-endpoint.yaml", daemonSet: "calico-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "SLEEP": "false", "CNI_NET_DIR": "/etc/cni/net.d",
			"KUBERNETES_SERVICE_HOST": "172.18.0.2", "KUBERNETES_SERVICE_PORT": "6443",
		},
		template:   "calico-system/cni-config:config",
		configMaps: []string{"calico-system/cni-config"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
	{
		file: "operator-master.yaml", daemonSet: "calico-system/calico-node",
		env: map[string]string{
			"CNI_CONF_NAME": "10-calico.conflist", "SLEEP": "false", "CNI_NET_DIR": "/etc/cni/net.d",
			"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
		},
		template:   "calico-system/cni-config:config",
		configMaps: []string{"calico-system/cni-config"},
		account:    "calico-cni-plugin", accountFrom: AccountCNIPluginExists,
		manageCNI: true,
	},
}

func resolveManifest(t *testing.T, m *Manifest) *Resolved {
	t.Helper()
	ds, err := m.FindDaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1", AgentEnv: agentEnv}, m)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return got
}

func TestResolveFixtures(t *testing.T) {
	for _, w := range fixtureWants {
		t.Run(w.file, func(t *testing.T) {
			m := parseFixture(t, w.file)
			got := resolveManifest(t, m)

			ref, key, _ := strings.Cut(w.template, ":")
			ns, name, _ := strings.Cut(ref, "/")
			cm, _ := m.ConfigMap(ns, name)
			if cm == nil || cm.Data[key] == "" {
				t.Fatalf("fixture has no ConfigMap %s with key %s", ref, key)
			}
			wantEnv := map[string]string{"CNI_NETWORK_CONFIG": cm.Data[key]}
			for k, v := range w.env {
				wantEnv[k] = v
			}
			want := &Resolved{
				DaemonSet:             w.daemonSet,
				Container:             "install-cni",
				Env:                   wantEnv,
				Template:              cm.Data[key],
				ConfigMaps:            w.configMaps,
				AbsentConfigMaps:      w.absent,
				ManageCNI:             w.manageCNI,
				CNIServiceAccount:     w.account,
				CNIServiceAccountFrom: w.accountFrom,
				CNINetDirHostPath:     "/etc/cni/net.d",
				Origins:               got.Origins, // TestOriginsFixtures
				ConfigMapMeta:         got.ConfigMapMeta,
			}
			var metaNames []string
			for _, m := range got.ConfigMapMeta {
				metaNames = append(metaNames, m.Namespace+"/"+m.Name)
			}
			if !reflect.DeepEqual(metaNames, w.configMaps) {
				t.Errorf("ConfigMapMeta names %v, want those of the ConfigMaps found, %v", metaNames, w.configMaps)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve:\n got %+v\nwant %+v", redactTemplate(got), redactTemplate(want))
			}
		})
	}
}

// The operator's template is the exact bytes the README gives, tabs and no
// trailing newline included: nothing on the way may re-marshal it.
func TestResolveOperatorTemplateBytes(t *testing.T) {
	got := resolveManifest(t, parseFixture(t, "operator-v3.32.yaml"))
	if want := string(readFixture(t, "operator-v3.32-cni-config.json")); got.Template != want {
		t.Errorf("template:\n got %q\nwant %q", got.Template, want)
	}
}

// The DaemonSets as a real API server returns them (defaulted, fieldRef
// apiVersion added) resolve exactly as the manifests they came from.
func TestResolveLiveDaemonSets(t *testing.T) {
	live, err := filepath.Glob(filepath.Join(installsDir, "live", "*.daemonset.yaml"))
	if err != nil || len(live) == 0 {
		t.Fatalf("no live fixtures: %v", err)
	}
	for _, path := range live {
		base := strings.TrimSuffix(filepath.Base(path), ".daemonset.yaml")
		t.Run(base, func(t *testing.T) {
			manifest := parseFixture(t, base+".yaml")
			liveDS := parseFixture(t, filepath.Join("live", filepath.Base(path)))
			if len(liveDS.DaemonSets) != 1 {
				t.Fatalf("%s holds %d DaemonSets, want 1", path, len(liveDS.DaemonSets))
			}
			combined := &Manifest{DaemonSets: liveDS.DaemonSets, ConfigMaps: manifest.ConfigMaps, ServiceAccounts: manifest.ServiceAccounts}
			got, want := resolveManifest(t, combined), resolveManifest(t, manifest)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("live DaemonSet resolves differently:\n got %+v\nwant %+v", redactTemplate(got), redactTemplate(want))
			}
		})
	}
}

// redactTemplate keeps failure messages readable.
func redactTemplate(r *Resolved) Resolved {
	out := *r
	out.Env = map[string]string{}
	for k, v := range r.Env {
		if k == "CNI_NETWORK_CONFIG" {
			v = "<template>"
		}
		out.Env[k] = v
	}
	out.Template = "<template>"
	return out
}
