package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

const caA = "-----BEGIN CERTIFICATE-----\nMIIBa\n-----END CERTIFICATE-----\n"

// fixtureInstall is source configmap on the v3.32 fixture with veth_mtu
// set, and the API address in the env.
func fixtureInstall(t *testing.T, mtu *string) inputs.InstallSource {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "test", "testdata", "fixtures", "calico-config-v3.32.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	return func(context.Context) (*inputs.Install, error) {
		c := cm.DeepCopy()
		c.Data[inputs.KeyVethMTU] = *mtu
		return inputs.InstallFromConfigMap(func(context.Context) (*corev1.ConfigMap, error) { return c, nil }, inputs.KeyTemplate, "",
			func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, inputs.SourceInfo{Kind: inputs.SourceConfigMap})(context.Background())
	}
}

// testReconciler reconciles a temporary directory from install, with a
// fixed token; own, when set, is told of its renames.
func testReconciler(t *testing.T, install inputs.InstallSource, own *OwnWrites) *reconcile.Reconciler {
	t.Helper()
	dir := t.TempDir()
	d := cniconf.Dir{NetDir: filepath.Join(dir, "net"), StateDir: filepath.Join(dir, "state"), BackupDir: filepath.Join(dir, "backups"), Policy: cniconf.PolicyReport}
	if own != nil {
		d.Renaming = own.Renaming
	}
	return &reconcile.Reconciler{
		Dir: d, NodeName: "node-1", KubeconfigName: cniconf.DefaultKubeconfigName, Install: install, Policy: token.PolicyOwn,
		CA: func() ([]byte, error) { return []byte(caA), nil },
		Token: token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
			return token.Token{Value: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", Source: token.SourceFile}, nil
		}),
	}
}
