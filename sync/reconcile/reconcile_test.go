package reconcile

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

const caA, caB = "-----BEGIN CERTIFICATE-----\nMIIBa\n-----END CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nMIIBb\n-----END CERTIFICATE-----\n"

// fixtureConfigMap is the v3.32 calico-config fixture.
func fixtureConfigMap(t *testing.T) corev1.ConfigMap {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "test", "testdata", "fixtures", "calico-config-v3.32.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

// fixtureInstall is source configmap on the v3.32 fixture with veth_mtu
// set, and the API address in the env.
func fixtureInstall(t *testing.T, mtu *string) inputs.InstallSource {
	t.Helper()
	cm := fixtureConfigMap(t)
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	return func(context.Context) (*inputs.Install, error) {
		c := cm.DeepCopy()
		c.Data[inputs.KeyVethMTU] = *mtu
		return inputs.InstallFromConfigMap(func(context.Context) (*corev1.ConfigMap, error) { return c, nil }, inputs.KeyTemplate, "",
			func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, inputs.SourceInfo{Kind: inputs.SourceConfigMap})(context.Background())
	}
}

func testReconciler(t *testing.T, install inputs.InstallSource) *Reconciler {
	t.Helper()
	dir := t.TempDir()
	return &Reconciler{
		Dir:      cniconf.Dir{NetDir: filepath.Join(dir, "net"), StateDir: filepath.Join(dir, "state"), BackupDir: filepath.Join(dir, "backups"), Policy: cniconf.PolicyReport},
		NodeName: "node-1", KubeconfigName: cniconf.DefaultKubeconfigName, Install: install, Policy: token.PolicyOwn,
		Token: token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
			return token.Token{Value: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", Source: token.SourceFile}, nil
		}),
	}
}

// TestCARotationIsFollowed: the fallback CA is read at every pass, so a CA
// rotated in place (the kubelet updates a pod's ca.crt) reaches the
// kubeconfig.
func TestCARotationIsFollowed(t *testing.T) {
	mtu := "0"
	r := testReconciler(t, fixtureInstall(t, &mtu))
	ca := caA
	r.CA = func() ([]byte, error) { return []byte(ca), nil }
	if _, _, err := r.Reconcile(context.Background(), ModeSync); err != nil {
		t.Fatal(err)
	}
	ca = caB
	if _, _, err := r.Reconcile(context.Background(), ModeSync); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(r.Dir.NetDir, cniconf.DefaultKubeconfigName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte(caB))) {
		t.Fatalf("the kubeconfig does not hold the rotated CA:\n%s", b)
	}
}

// TestEnforceReadsFresh: before enforce replaces a hand edit, the inputs
// are read fresh: a cache a moment behind never rolls a newer ConfigMap
// back.
func TestEnforceReadsFresh(t *testing.T) {
	cached, fresh := "1400", "1460"
	r := testReconciler(t, fixtureInstall(t, &cached))
	r.CA = func() ([]byte, error) { return []byte(caA), nil }
	r.Dir.Policy = cniconf.PolicyEnforce
	if _, _, err := r.Reconcile(context.Background(), ModeSync); err != nil {
		t.Fatal(err)
	}
	// The ConfigMap moved to 1460 and install-cni (a calico-node restart)
	// wrote it; the agent's cache still says 1400.
	conf := filepath.Join(r.Dir.NetDir, cniconf.DefaultConfListName)
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(b), `"mtu": 1400`, `"mtu": 1460`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Fresh = fixtureInstall(t, &fresh)
	if _, _, err := r.Reconcile(context.Background(), ModeSync); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), `"mtu": 1460`) {
		t.Fatalf("enforce rolled the newer ConfigMap back to the cached one:\n%s", b)
	}
}

// TestErrorStatusesNameTheConfNameOfTheInputs: a pass whose inputs name the
// conf (install-cni's CNI_CONF_NAME, canal's 10-canal.conflist) but that
// fails after reading them reports that file as Error, not
// 10-calico.conflist, which does not exist on such a node.
func TestErrorStatusesNameTheConfNameOfTheInputs(t *testing.T) {
	mtu := "0"
	base := fixtureInstall(t, &mtu)
	r := testReconciler(t, func(ctx context.Context) (*inputs.Install, error) {
		in, err := base(ctx)
		if err != nil {
			return nil, err
		}
		env := in.Env
		in.Env = func(k string) (string, bool) {
			if k == "CNI_CONF_NAME" {
				return "10-canal.conflist", true
			}
			return env(k)
		}
		return in, nil
	})
	r.Token = token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
		return token.Token{}, errors.New("serviceaccounts \"canal\" is forbidden")
	})
	rep, _, err := r.Reconcile(context.Background(), ModeSync)
	if err == nil {
		t.Fatal("the pass succeeded without a token")
	}
	var names []string
	for _, f := range rep.Files {
		if f.State != cniconf.Error {
			t.Errorf("%s: %s, want Error", f.Path, f.State)
		}
		names = append(names, filepath.Base(f.Path))
	}
	if len(names) == 0 || names[0] != "10-canal.conflist" {
		t.Fatalf("Error reported for %v, want 10-canal.conflist first", names)
	}
}
