package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiscoveryTemplateFileOnline: online, with --source=auto finding
// calico-system/calico-node, --cni-network-config-file replaces just the
// template: the file is rendered, with install-cni's environment from the
// DaemonSet, and the CNI account is still the DaemonSet's.
func TestDiscoveryTemplateFileOnline(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net), apiServerHere())
	custom := filepath.Join(e.dir, "custom.json")
	must(t, os.WriteFile(custom, []byte(`{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico",`+
		`"log_level":"custom-template-marker","mtu":__CNI_MTU__,"ipam":{"type":"calico-ipam"},`+
		`"kubernetes":{"kubeconfig":"__KUBECONFIG_FILEPATH__"}}]}`), 0o600))
	if code, out := e.runNode(e.nodeArgs("--once", "--cni-network-config-file", custom)...); code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}
	if conf := e.read("10-calico.conflist"); !strings.Contains(conf, "custom-template-marker") || !strings.Contains(conf, installCNIKubeconfig) {
		t.Fatalf("10-calico.conflist is not the template file rendered with the DaemonSet's environment:\n%s", conf)
	}
	code, rep := e.driftJSON("--cni-network-config-file", custom)
	if code != 0 || rep.Source == nil || rep.Source.DaemonSet != "calico-system/calico-node" || rep.Token.ServiceAccount != "calico-system/calico-cni-plugin" {
		t.Fatalf("drift: exit %d, source %+v, token %+v", code, rep.Source, rep.Token)
	}
}
