package installcni

import (
	"strings"
	"testing"
)

// Every variable of install-cni's environment has an origin, and the ones a
// lasting change goes through point where the install sets them.
func TestOriginsFixtures(t *testing.T) {
	cm := func(ref string) Origin {
		name, key, _ := strings.Cut(ref, ":")
		return Origin{Kind: OriginConfigMapKey, ConfigMap: name, Key: key}
	}
	want := map[string]map[string]Origin{
		"manifest-v2.6.yaml": {
			"ETCD_ENDPOINTS":          cm("kube-system/calico-config:etcd_endpoints"),
			"KUBERNETES_SERVICE_HOST": {Kind: OriginService},
		},
		"manifest-v2.6-kdd.yaml": {"KUBERNETES_NODE_NAME": {Kind: OriginField}},
		"manifest-v3.32.yaml": {
			"CNI_MTU":                 cm("kube-system/calico-config:veth_mtu"),
			"CNI_CONF_NAME":           {Kind: OriginValue},
			"KUBERNETES_NODE_NAME":    {Kind: OriginField},
			"KUBERNETES_SERVICE_HOST": {Kind: OriginService},
		},
		"canal-v3.32.yaml": {"CNI_MTU": cm("kube-system/canal-config:veth_mtu")},
		"operator-v3.32.yaml": {
			"KUBERNETES_SERVICE_HOST": {Kind: OriginValue},
			"CNI_NET_DIR":             {Kind: OriginValue},
		},
	}
	for _, w := range fixtureWants {
		t.Run(w.file, func(t *testing.T) {
			got := resolveManifest(t, parseFixture(t, w.file))
			for name := range got.Env {
				if _, ok := got.Origins[name]; !ok {
					t.Errorf("%s has no origin", name)
				}
			}
			if o := got.Origins["CNI_NETWORK_CONFIG"]; o != cm(w.template) {
				t.Errorf("CNI_NETWORK_CONFIG from %+v, want %+v", o, cm(w.template))
			}
			for name, o := range want[w.file] {
				if got.Origins[name] != o {
					t.Errorf("%s from %+v, want %+v", name, got.Origins[name], o)
				}
			}
		})
	}
	if len(want) == 0 {
		t.Fatal("no expectations")
	}
}
