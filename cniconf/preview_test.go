package cniconf

import (
	"slices"
	"strings"
	"testing"
)

// TestPreview: a config a runtime would refuse is rendered all the same,
// with the reason, and BuildDesired still refuses it; the paths that differ
// between two renders are named as drift names them, the token aside.
func TestPreview(t *testing.T) {
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	data := fixtureData(t, "calico-config-v3.32.yaml")
	now, unloadable, err := Preview(goldenInputs(data, env), "")
	if err != nil || unloadable != nil {
		t.Fatalf("Preview of calico-config v3.32: %v, unloadable %v", err, unloadable)
	}

	bad := map[string]string{"cni_network_config": strings.Replace(data["cni_network_config"], `"cniVersion": "1.0.0"`, `"cniVersion": "9.9.9"`, 1), "veth_mtu": "1400"}
	next, unloadable, err := Preview(goldenInputs(bad, env), "")
	if err != nil || unloadable == nil || !strings.Contains(unloadable.Error(), `cniVersion "9.9.9" is not supported`) {
		t.Fatalf("Preview of a cniVersion libcni does not know: %v, unloadable %v; want the files and the reason", err, unloadable)
	}
	if _, err := BuildDesired(goldenInputs(bad, env), ""); err == nil || err.Error() != unloadable.Error() {
		t.Errorf("BuildDesired: %v, want %v", err, unloadable)
	}
	changed, err := ChangedBetween(now.Conf(), next.Conf())
	if err != nil || !slices.Equal(changed, []string{"cniVersion", "plugins.0.mtu"}) {
		t.Errorf("ChangedBetween: %v, %v; want cniVersion and plugins.0.mtu", changed, err)
	}

	other := goldenInputs(data, env)
	other.Token = "another-token-0123456789"
	again, _, err := Preview(other, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range now.Files {
		if changed, err := ChangedBetween(now.Files[i], again.Files[i]); err != nil || len(changed) != 0 {
			t.Errorf("%s with another token: %v, %v; want no change", now.Files[i].Name, changed, err)
		}
	}
	if d := ProposedDiff("/etc/cni/net.d/calico-kubeconfig", now.Files[1].Content, again.Files[1].Content, now.Token, other.Token); strings.Contains(d, other.Token) || strings.Contains(d, now.Token) {
		t.Errorf("ProposedDiff shows a token:\n%s", d)
	}
}
