package probe

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDiscover: any config in the directory is walked without a panic, and
// every credential it points to loads or fails with an error.
func FuzzDiscover(f *testing.F) {
	for _, s := range []string{
		`{"type":"multus","kubeconfig":"/etc/cni/net.d/k","delegates":[{"plugins":[{"type":"calico","kubernetes":{"kubeconfig":"/etc/cni/net.d/k"}}]}]}`,
		`{"plugins":[{"type":"istio-cni","kubernetes":{"kubeconfig":"k"}},{"type":"x","ipam":{"type":"whereabouts","kubernetes":{"kubeconfig":"../k"}}}]}`,
		`{"type":"calico","policy":{"k8s_api_root":"https://a/api/v1","k8s_auth_token":"t","k8s_certificate_authority":"/ca"}}`,
		`{"plugins":{"type":"calico"},"delegates":"x","type":7}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, conf string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00.conflist"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "k"), []byte(kubeconfig("https://127.0.0.1:1", nil, "t")), 0o600); err != nil {
			t.Fatal(err)
		}
		targets, err := Dir{Path: dir, HostPath: "/etc/cni/net.d"}.Discover()
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			if tg.Plugin == "" || tg.Path == "" {
				t.Errorf("target without a plugin or path: %+v", tg)
			}
			if cred, err := tg.Credential(); err == nil && cred.Server == "" && tg.Plugin == PluginCalico {
				t.Errorf("calico credential without a server: %+v", tg)
			}
		}
	})
}
