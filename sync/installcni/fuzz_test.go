package installcni

import (
	"path/filepath"
	"testing"
)

// FuzzParseManifest feeds ParseManifest, and Resolve on what it finds, with
// mutations of the real installs. Neither may panic, and every object kept
// must be addressable by namespace and name.
func FuzzParseManifest(f *testing.F) {
	for _, pattern := range []string{"*.yaml", "*.json", "live/*.yaml"} {
		files, err := filepath.Glob(filepath.Join(installsDir, pattern))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			rel, err := filepath.Rel(installsDir, file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(readFixture(f, rel))
		}
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}]}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		for i := range m.ConfigMaps {
			cm := &m.ConfigMaps[i]
			if cm.Name == "" || cm.Namespace == "" {
				t.Fatalf("ConfigMap without a name or namespace: %+v", cm.ObjectMeta)
			}
			if got, _ := m.ConfigMap(cm.Namespace, cm.Name); got == nil {
				t.Fatalf("ConfigMap %s/%s kept but not found", cm.Namespace, cm.Name)
			}
		}
		for i := range m.DaemonSets {
			ds := &m.DaemonSets[i]
			if ds.Name == "" || ds.Namespace == "" || m.DaemonSet(ds.Namespace, ds.Name) != ds {
				t.Fatalf("DaemonSet %s/%s kept but not found", ds.Namespace, ds.Name)
			}
			got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1", AgentEnv: agentEnv}, m)
			if err == nil && got.Env == nil {
				t.Fatalf("Resolve of %s/%s succeeded without an environment", ds.Namespace, ds.Name)
			}
		}
	})
}
