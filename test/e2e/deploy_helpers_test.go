package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// newSystemEnv is newEnv in kube-system, where the manifests grant:
// calico-config (the given fixture), the calico-node ServiceAccount with its
// token Secret under the name overlays/pinned-secret pins, and a Node. All
// removed at cleanup.
func newSystemEnv(t testing.TB, fixture string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	// bare: the agent runs as the manifests run it, with no input flags.
	e := &env{t: t, ctx: ctx, client: cp.Client, ns: "kube-system", node: fmt.Sprintf("deploy-node-%d", seq.Add(1)), dir: t.TempDir(), bare: true}
	e.net = filepath.Join(e.dir, "net.d")
	must(t, os.MkdirAll(e.net, 0o755))
	core := cp.Client.CoreV1()
	t.Cleanup(func() {
		bg := context.Background()
		_ = core.Nodes().Delete(bg, e.node, metav1.DeleteOptions{})
		_ = core.ConfigMaps(e.ns).Delete(bg, "calico-config", metav1.DeleteOptions{})
		_ = core.Secrets(e.ns).Delete(bg, pinnedSecret, metav1.DeleteOptions{})
		_ = core.ServiceAccounts(e.ns).Delete(bg, "calico-node", metav1.DeleteOptions{})
	})
	_, err := core.Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.node}}, metav1.CreateOptions{})
	must(t, err)
	_, err = core.ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}, metav1.CreateOptions{})
	must(t, err)
	e.cniBinding = bindCNIAccounts(t, ctx, e.ns)
	e.applyFixture(fixture)
	e.secret = e.populatedTokenSecret(pinnedSecret)
	return e
}

// installCalico applies a whole Calico install from the fixtures (its
// DaemonSet, ConfigMaps, ServiceAccounts and RBAC) as an operator would,
// with the DaemonSet's CNI hostPath pointed at this env's directory: the
// agent refuses to write anywhere else than where install-cni writes. It is
// deleted at cleanup.
func (e *env) installCalico(fixture string) {
	e.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "installs", fixture))
	must(e.t, err)
	manifest := strings.ReplaceAll(string(raw), "path: /etc/cni/net.d", "path: "+e.net)
	// The operator writes the API address into the DaemonSet: this cluster's,
	// on loopback, never the fixture's real cluster address.
	host, port, _ := strings.Cut(apiService(), ":")
	manifest = strings.ReplaceAll(manifest, "value: 10.96.0.1\n", "value: "+host+"\n")
	// And into cni-config's k8s_api_root, which the plugin (and the
	// agent's credential probe) dials before the kubeconfig's server.
	manifest = strings.ReplaceAll(manifest, "https://10.96.0.1:443", "https://"+apiService())
	manifest = strings.ReplaceAll(manifest, "value: \"443\"\n", "value: \""+port+"\"\n")
	// The namespace is the test's to make and keep: deleting it with the
	// install would leave it terminating under the next test.
	var docs []string
	for _, d := range strings.Split(manifest, "\n---\n") {
		if !regexp.MustCompile(`(?m)^kind: Namespace$`).MatchString(d) {
			docs = append(docs, d)
		}
	}
	manifest = strings.Join(docs, "\n---\n")
	path := filepath.Join(e.t.TempDir(), fixture)
	must(e.t, os.WriteFile(path, []byte(manifest), 0o600))
	admin := filepath.Join(e.t.TempDir(), "admin.kubeconfig")
	must(e.t, cp.WriteKubeconfig(admin, cp.Config))
	if strings.Contains(manifest, "namespace: calico-system") {
		_, err := cp.Client.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "calico-system"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			e.t.Fatal(err)
		}
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := kubectl(ctx, admin, "delete", "--ignore-not-found", "--wait=false", "-f", path); err != nil {
			e.t.Errorf("kubectl delete -f %s: %v\n%s", fixture, err, out)
		}
	})
	if out, err := kubectl(e.ctx, admin, "apply", "--server-side", "--force-conflicts", "--field-manager", "calico-install", "-f", path); err != nil {
		e.t.Fatalf("kubectl apply --server-side -f %s: %v\n%s", fixture, err, out)
	}
}

// populatedTokenSecret creates a token Secret for calico-node and waits until
// the token controller has populated it. A ServiceAccount recreated under the
// name a previous test deleted may not be in the controller's cache yet; the
// controller then deletes the Secret as an orphan, so it is created again.
func (e *env) populatedTokenSecret(name string) string {
	e.t.Helper()
	secrets := e.client.CoreV1().Secrets(e.ns)
	e.eventually(time.Minute, "token Secret "+name+" populated", func() error {
		s, err := secrets.Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
				Type: corev1.SecretTypeServiceAccountToken}
			if _, err = secrets.Create(e.ctx, s, metav1.CreateOptions{}); err == nil {
				err = errorf("created; not populated yet")
			}
			return err
		}
		if err != nil {
			return err
		}
		if len(s.Data["token"]) == 0 || len(s.Data["ca.crt"]) == 0 {
			return errorf("not populated yet")
		}
		return nil
	})
	return name
}

// asManifestsServiceAccount points the agent at a real token of the
// manifests' ServiceAccount instead of admin, and returns a client with the
// same identity once RBAC lets it read calico-config (RBAC is cached).
func (e *env) asManifestsServiceAccount() kubernetes.Interface {
	e.t.Helper()
	tok, err := cp.TokenFor(e.ctx, "kube-system", "calico-cni-sync", time.Hour)
	must(e.t, err)
	e.kubeconfig = filepath.Join(e.dir, "calico-cni-sync.kubeconfig")
	must(e.t, cp.WriteKubeconfig(e.kubeconfig, cp.ConfigForToken(tok)))
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(e.t, err)
	e.eventually(30*time.Second, "RBAC of the manifests in effect", func() error {
		_, err := sa.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
		return err
	})
	return sa
}

// calicoSystem creates the operator's namespace for a test that needs it.
func calicoSystem(t testing.TB, ctx context.Context) {
	t.Helper()
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "calico-system"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// withComponent is a kustomization of an operator's own, in a temporary
// directory: the manifests' base with one of its Components, as the
// Component's kustomization says to add it.
func withComponent(t *testing.T, component string) string {
	t.Helper()
	manifests, err := filepath.Abs("../../manifests")
	must(t, err)
	dir := filepath.Join(t.TempDir(), "my-cluster")
	must(t, os.MkdirAll(dir, 0o755))
	rel, err := filepath.Rel(dir, manifests)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: ["+rel+"]\ncomponents: ["+
		filepath.Join(rel, "components", component)+"]\n"), 0o600))
	return dir
}
