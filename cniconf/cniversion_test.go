package cniconf

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
	"sigs.k8s.io/yaml"
)

// operatorTemplate is the template in the cni-config ConfigMap of an
// operator install fixture.
func operatorTemplate(t *testing.T, fixture string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir(t), "installs", fixture))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct{ Name string }
			Data     map[string]string `json:"data"`
		}
		if yaml.Unmarshal([]byte(doc), &obj) == nil && obj.Kind == "ConfigMap" && obj.Metadata.Name == "cni-config" {
			return obj.Data["config"]
		}
	}
	t.Fatalf("%s has no cni-config", fixture)
	return ""
}

// pluginVersions answers a plugin's VERSION the way a plugin built with
// libcni's skel does; every other call is refused (nothing here runs a
// network).
type pluginVersions map[string]version.PluginInfo

func (p pluginVersions) FindInPath(plugin string, _ []string) (string, error) { return plugin, nil }
func (p pluginVersions) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

func (p pluginVersions) ExecPlugin(_ context.Context, plugin string, _ []byte, environ []string) ([]byte, error) {
	for _, e := range environ {
		if e == "CNI_COMMAND=VERSION" {
			info, ok := p[plugin]
			if !ok {
				info = p[""]
			}
			return json.Marshal(info)
		}
	}
	return nil, os.ErrPermission
}

// calicoVersions is what Calico's plugins (calico, calico-ipam) answer to
// VERSION: projectcalico/calico cni-plugin/pkg/plugin/plugin.go and
// pkg/ipamplugin/ipam_plugin.go, skel.PluginMainFuncs, on master (August
// 2026). Debian's reference plugins (portmap, bandwidth) answer the same.
var calicoVersions = version.PluginSupports("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")

// TestCNIVersion100 covers the templates that declare cniVersion 1.0.0
// (Calico v3.31.7 and later, the tigera operator since spec.cni.specVersion):
// the render is written, and libcni (the loader of containerd and CRI-O)
// takes it for a 1.0.0 list, through its list loaders old and new, with
// plugins that load on their own and that pass its version check when they
// support 1.0.0 (as Calico's do) and fail it when they stop at 0.4.0.
func TestCNIVersion100(t *testing.T) {
	templates := map[string]string{
		"calico-config-v3.32.yaml":      fixtureData(t, "calico-config-v3.32.yaml")["cni_network_config"],
		"installs/operator-master.yaml": operatorTemplate(t, "operator-master.yaml"),
	}
	for name, tmpl := range templates {
		t.Run(name, func(t *testing.T) {
			in := goldenInputs(map[string]string{"cni_network_config": tmpl, "veth_mtu": "1440"}, clusterEnv)
			want, err := BuildDesired(in, "")
			if err != nil {
				t.Fatalf("BuildDesired: %v", err)
			}
			conf := want.Conf()
			if conf.Name != DefaultConfListName {
				t.Fatalf("written as %s, want %s", conf.Name, DefaultConfListName)
			}
			if err := ValidateConf(conf.Name, conf.Content); err != nil {
				t.Fatalf("ValidateConf: %v", err)
			}
			list, err := libcni.NetworkConfFromBytes(conf.Content)
			if err != nil {
				t.Fatalf("libcni.NetworkConfFromBytes: %v", err)
			}
			old, err := libcni.ConfListFromBytes(conf.Content)
			if err != nil {
				t.Fatalf("libcni.ConfListFromBytes: %v", err)
			}
			if list.CNIVersion != "1.0.0" || old.CNIVersion != "1.0.0" {
				t.Fatalf("cniVersion %q (ConfListFromBytes %q), want 1.0.0", list.CNIVersion, old.CNIVersion)
			}
			if ok, err := version.GreaterThanOrEqualTo(version.Current(), list.CNIVersion); err != nil || !ok {
				t.Errorf("libcni %s does not reach cniVersion %s (%v)", version.Current(), list.CNIVersion, err)
			}
			for i, p := range list.Plugins {
				if c, err := libcni.NetworkPluginConfFromBytes(p.Bytes); err != nil || c.Network.Type == "" {
					t.Errorf("plugins.%d: libcni.NetworkPluginConfFromBytes: %v (type %q)", i, err, p.Network.Type)
				}
			}
			ctx := context.Background()
			current := libcni.NewCNIConfig([]string{"/nonexistent"}, pluginVersions{"": calicoVersions})
			if _, err := current.ValidateNetworkList(ctx, list); err != nil {
				t.Errorf("plugins that support 1.0.0: %v", err)
			}
			legacy := version.PluginSupports("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0")
			stale := libcni.NewCNIConfig([]string{"/nonexistent"}, pluginVersions{"": calicoVersions, "calico": legacy})
			if _, err := stale.ValidateNetworkList(ctx, list); err == nil || !strings.Contains(err.Error(), `plugin calico does not support config version "1.0.0"`) {
				t.Errorf("a calico plugin that stops at 0.4.0: %v, want libcni's refusal", err)
			}
		})
	}
}
