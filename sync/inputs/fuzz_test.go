package inputs

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoadConfigMapFile: whatever --configmap-file holds, loading it never
// panics, and a ConfigMap it loads renders from its own template key or is
// refused with an error.
func FuzzLoadConfigMapFile(f *testing.F) {
	for _, name := range []string{"calico-config-v3.32.yaml", "calico-config-v2.6-etcd.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "test", "testdata", "fixtures", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"ConfigMap","metadata":{"name":"c","namespace":"n"},"data":{"cni_network_config":"{}","veth_mtu":"1400"}}`))
	f.Add([]byte("kind: Secret\ndata: {a: b}\n"))
	f.Add([]byte("data:\n  cni_network_config: 1\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("data: {1: a, \"1\": b, 1.0: c}\n"))
	path := filepath.Join(f.TempDir(), "calico-config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cm, err := LoadConfigMapFile(path)
		if err != nil {
			return
		}
		if cm == nil || (cm.Kind != "" && cm.Kind != "ConfigMap") {
			t.Fatalf("loaded %+v", cm)
		}
		for range 4 {
			if again, err := LoadConfigMapFile(path); err != nil || !reflect.DeepEqual(again.Data, cm.Data) {
				t.Fatalf("read again, the file means something else: %v", err)
			}
		}
		in, err := InstallFromConfigMap(ConfigMapFromFile(path), KeyTemplate, "", nil, nil, SourceInfo{})(context.Background())
		if err != nil {
			return
		}
		if in.Template != cm.Data[KeyTemplate] || in.VethMTU != cm.Data[KeyVethMTU] {
			t.Fatalf("install %q %q from a ConfigMap holding %q %q", in.Template, in.VethMTU, cm.Data[KeyTemplate], cm.Data[KeyVethMTU])
		}
	})
}
