package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// customTemplate is a template of the operator's own, told apart by its
// log level.
const customTemplate = `{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "custom-template-marker",
      "nodename": "__KUBERNETES_NODE_NAME__",
      "mtu": __CNI_MTU__,
      "ipam": {"type": "calico-ipam"},
      "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"}
    }
  ]
}`

// templateManifest writes the manifest fixture's DaemonSet and ConfigMap,
// the DaemonSet's CNI hostPath this node's directory, edit applied to the
// text.
func templateManifest(t *testing.T, n *node, edit func(string) string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures(t), "installs", "manifest-v3.32.yaml"))
	must(t, err)
	var keep []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.Contains(doc, "\nkind: DaemonSet") || strings.Contains(doc, "\nkind: ConfigMap") {
			keep = append(keep, strings.ReplaceAll(doc, "path: /etc/cni/net.d", "path: "+n.net))
		}
	}
	text := strings.Join(keep, "\n---\n")
	if edit != nil {
		text = edit(text)
	}
	path := filepath.Join(n.dir, "calico.yaml")
	must(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// TestTemplateFileReplacesTheManifestsTemplate: with --manifest-file,
// --cni-network-config-file replaces just the template: the file is
// rendered with install-cni's environment from the DaemonSet (its
// CNI_MTU from calico-config's veth_mtu).
func TestTemplateFileReplacesTheManifestsTemplate(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	manifest := templateManifest(t, n, func(s string) string {
		return strings.Replace(s, `veth_mtu: "0"`, `veth_mtu: "1370"`, 1)
	})
	custom := filepath.Join(n.dir, "custom.json")
	must(t, os.WriteFile(custom, []byte(customTemplate), 0o600))
	code, out := n.run("render", "--manifest-file", manifest, "--configmap-file", "", "--cni-network-config-file", custom)
	if code != 0 {
		t.Fatalf("render: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "custom-template-marker") || !strings.Contains(out, `"mtu": 1370`) {
		t.Fatalf("render did not use the template file with the DaemonSet's environment:\n%s", out)
	}
}

// TestTemplateFileForAContainerTemplateFile: a DaemonSet whose install-cni
// reads its template from a file in the container (CNI_NETWORK_CONFIG_FILE)
// is refused with a message that names --cni-network-config-file; given
// that flag, the node is rendered from it.
func TestTemplateFileForAContainerTemplateFile(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	manifest := templateManifest(t, n, func(s string) string {
		return strings.Replace(s, `            - name: CNI_CONF_NAME
`, `            - name: CNI_NETWORK_CONFIG_FILE
              value: /host/etc/cni/net.d/calico.conflist.template
            - name: CNI_CONF_NAME
`, 1)
	})
	must(t, os.WriteFile(n.tok, []byte(cniPluginToken), 0o600))
	code, out := n.run("--once", "--manifest-file", manifest, "--configmap-file", "")
	if code != 2 || !strings.Contains(out, "CNI_NETWORK_CONFIG_FILE") || !strings.Contains(out, "--cni-network-config-file") {
		t.Fatalf("--once without the template: exit %d, want 2 naming CNI_NETWORK_CONFIG_FILE and the flag\n%s", code, out)
	}
	custom := filepath.Join(n.dir, "custom.json")
	must(t, os.WriteFile(custom, []byte(customTemplate), 0o600))
	if code, out := n.run("--once", "--manifest-file", manifest, "--configmap-file", "", "--cni-network-config-file", custom); code != 0 {
		t.Fatalf("--once with the template file: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(n.net, "10-calico.conflist"))
	must(t, err)
	if !strings.Contains(string(b), "custom-template-marker") {
		t.Fatalf("10-calico.conflist is not from the template file:\n%s", b)
	}
}
