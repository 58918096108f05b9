package cniconf

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestFactsAreTheNodesOwn: a fact is recorded only for a value this
// process's environment (or a flag) gave; a value the cluster sets, such as
// install-cni's CNI_MTU from calico-config's veth_mtu or the API address from
// the kubernetes-services-endpoint ConfigMap, is none.
func TestFactsAreTheNodesOwn(t *testing.T) {
	template := `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","mtu":__CNI_MTU__,"nodename":"__KUBERNETES_NODE_NAME__","kubernetes":{"kubeconfig":"__KUBECONFIG_FILEPATH__"}}]}`
	env := map[string]string{"CNI_MTU": "1400", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	cases := []struct {
		name    string
		cluster []string
		want    map[string]string
	}{
		{name: "all from the environment",
			want: map[string]string{FactNodeName: "node-1", FactAPIServer: "https://10.96.0.1:443", FactMTU: "1400"}},
		{name: "MTU from a ConfigMap", cluster: []string{"CNI_MTU"},
			want: map[string]string{FactNodeName: "node-1", FactAPIServer: "https://10.96.0.1:443"}},
		{name: "API host from a ConfigMap", cluster: []string{"KUBERNETES_SERVICE_HOST"},
			want: map[string]string{FactNodeName: "node-1", FactMTU: "1400"}},
		{name: "API port from a ConfigMap", cluster: []string{"KUBERNETES_SERVICE_PORT"},
			want: map[string]string{FactNodeName: "node-1", FactMTU: "1400"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Inputs{Template: template, Env: mapEnv(env), NodeName: "node-1", NetDir: "/etc/cni/net.d",
				Token: testToken, CA: []byte(testCA), FileExists: func(string) bool { return false }}
			if tc.cluster != nil {
				in.FromCluster = func(key string) bool { return slices.Contains(tc.cluster, key) }
			}
			d, err := BuildDesired(in, "")
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(d.Facts, tc.want) {
				t.Fatalf("facts %v, want %v", d.Facts, tc.want)
			}
		})
	}
}

// TestFactChangeNamesItsPlace: the refusal names where the new value comes
// from: this command's environment, which is the only place a fact has.
func TestFactChangeNamesItsPlace(t *testing.T) {
	changes := ChangedFacts(map[string]string{FactMTU: "1440", FactNodeName: "n1"}, map[string]string{FactMTU: "1500", FactNodeName: "n1"})
	if len(changes) != 1 {
		t.Fatalf("changes %v", changes)
	}
	if got := changes[0].String(); !strings.Contains(got, `"1440"`) || !strings.Contains(got, `"1500"`) || !strings.Contains(got, "$CNI_MTU in this command's environment") {
		t.Fatalf("message %q", got)
	}
}
