package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
)

// clusterInformation is Calico's ClusterInformation resource.
var clusterInformation = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "clusterinformations"}

// serveClusterInformation applies Calico's ClusterInformation CRD (the one
// the real-node tests serve: the install fixtures leave Calico's CRDs out)
// and waits until it is served.
func serveClusterInformation(t *testing.T, ctx context.Context, admin string) dynamic.ResourceInterface {
	t.Helper()
	if out, err := kubectl(ctx, admin, "apply", "--server-side", "-f", filepath.Join("..", "realnode", "testdata", "clusterinformation.yaml")); err != nil {
		t.Fatalf("apply the ClusterInformation CRD: %v\n%s", err, out)
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	must(t, err)
	ci := dyn.Resource(clusterInformation)
	e := &env{t: t, ctx: ctx}
	e.eventually(time.Minute, "ClusterInformation served", func() error {
		_, err := ci.List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
	return ci
}

// cniAccount is a CNI plugin's ServiceAccount with a ClusterRole of its own
// bound to it, as Calico's manifests bind calico-cni-plugin.
func cniAccount(t *testing.T, ctx context.Context, ns, name string, rule rbacv1.PolicyRule) {
	t.Helper()
	_, err := cp.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	must(t, err)
	role := ns + "-" + name
	_, err = cp.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{})
	must(t, err)
	_, err = cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = cp.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), role, metav1.DeleteOptions{})
		_ = cp.Client.RbacV1().ClusterRoles().Delete(context.Background(), role, metav1.DeleteOptions{})
	})
}

// signJWT signs a token's header and claims with key (RS256).
func signJWT(t *testing.T, header, claims []byte, key *rsa.PrivateKey) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc(header) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	must(t, err)
	return signed + "." + enc(sig)
}

// jwtParts are a real token's header and claims.
func jwtParts(t *testing.T, token string) (header []byte, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	must(t, err)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	must(t, json.Unmarshal(payload, &claims))
	return header, claims
}

func apiServerKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile(cp.SigningKeyFile())
	must(t, err)
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatal("the API server's signing key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	must(t, err)
	return key
}

// anotherCA is a CA that did not sign the API server's certificate.
func anotherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rotated-cluster-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// calicoDir is a CNI directory whose conflist points to its
// calico-kubeconfig, written with the given credential.
func calicoDir(t *testing.T, kc cniconf.Kubeconfig) probe.Dir {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "calico-kubeconfig"), kc.Bytes(), 0o600))
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"calico","datastore_type":"kubernetes",
		"ipam":{"type":"calico-ipam"},"policy":{"type":"k8s"},"kubernetes":{"kubeconfig":%q}},{"type":"portmap","capabilities":{"portMappings":true}}]}`,
		filepath.Join(dir, "calico-kubeconfig"))
	must(t, os.WriteFile(filepath.Join(dir, "10-calico.conflist"), []byte(conf), 0o644))
	return probe.Dir{Path: dir}
}

// only probes a directory that holds one credential.
func only(t *testing.T, ctx context.Context, d probe.Dir) probe.Result {
	t.Helper()
	results, err := d.ProbeAll(ctx, probe.Prober{})
	must(t, err)
	if len(results) != 1 {
		t.Fatalf("%d credentials found, want 1: %+v", len(results), results)
	}
	return results[0]
}

// TestProbeCalicoCredential: Calico's credential judged by Calico's own
// first request on a real API server, from the file on disk alone.
func TestProbeCalicoCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("probe-%d", seq.Add(1))
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() { _ = cp.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(admin, cp.Config))
	ci := serveClusterInformation(t, ctx, admin)
	e := &env{t: t, ctx: ctx}

	cniAccount(t, ctx, ns, "calico-cni-plugin", rbacv1.PolicyRule{APIGroups: []string{"crd.projectcalico.org"}, Resources: []string{"clusterinformations"}, Verbs: []string{"get"}})
	tok, err := cp.TokenFor(ctx, ns, "calico-cni-plugin", 0)
	must(t, err)
	subject := "system:serviceaccount:" + ns + ":calico-cni-plugin"
	server := "https://" + cp.Host()
	good := cniconf.Kubeconfig{Server: server, CAData: cp.CAData(), Token: tok}

	// No ClusterInformation yet: the credential is allowed; the plugin
	// would fail for the missing object, which no token fixes.
	err = ci.Delete(ctx, "default", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "ok while clusterinformations/default is missing", func() error {
		r := only(t, ctx, calicoDir(t, good))
		if r.Verdict != probe.OK || !strings.Contains(r.Message, "does not exist") {
			return fmt.Errorf("verdict %s: %s", r.Verdict, r.Message)
		}
		return nil
	})
	if out, err := kubectl(ctx, admin, "apply", "--server-side", "-f", filepath.Join("..", "realnode", "testdata", "clusterinformation-default.yaml")); err != nil {
		t.Fatalf("create clusterinformations/default: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = ci.Delete(context.Background(), "default", metav1.DeleteOptions{}) })

	t.Run("ok", func(t *testing.T) {
		r := only(t, ctx, calicoDir(t, good))
		if r.Verdict != probe.OK || r.Message != "" || r.Subject != subject || r.Plugin != probe.PluginCalico {
			t.Fatalf("%+v, want ok for %s", r, subject)
		}
	})

	t.Run("token signed by another key is rejected", func(t *testing.T) {
		header, claims := jwtParts(t, tok)
		b, err := json.Marshal(claims)
		must(t, err)
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		must(t, err)
		forged := good
		forged.Token = signJWT(t, header, b, other)
		r := only(t, ctx, calicoDir(t, forged))
		if r.Verdict != probe.Rejected {
			t.Fatalf("%+v, want rejected", r)
		}
	})

	t.Run("a CA that is not the API server's is untrusted", func(t *testing.T) {
		rotated := good
		rotated.CAData = anotherCA(t)
		r := only(t, ctx, calicoDir(t, rotated))
		if r.Verdict != probe.Untrusted || !strings.Contains(r.Message, "x509") {
			t.Fatalf("%+v, want untrusted with the x509 error", r)
		}
	})

	t.Run("expired by its claims, without a request", func(t *testing.T) {
		// A token the API server itself signed, whose claims say it
		// expired a minute ago: were it sent, the answer would be 401.
		header, claims := jwtParts(t, tok)
		claims["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		claims["nbf"] = claims["iat"]
		claims["exp"] = time.Now().Add(-time.Minute).Unix()
		b, err := json.Marshal(claims)
		must(t, err)
		expired := good
		expired.Token = signJWT(t, header, b, apiServerKey(t))
		cred, err := probe.FromKubeconfig(expired.Bytes())
		must(t, err)
		out := probe.Prober{}.Probe(ctx, cred, probe.CalicoFirst)
		if out.Verdict != probe.Expired || out.Requests != 0 {
			t.Fatalf("%+v, want expired after no request", out)
		}
		if r := only(t, ctx, calicoDir(t, expired)); r.Verdict != probe.Expired {
			t.Fatalf("%+v, want expired", r)
		}
	})

	t.Run("a closed port is unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		addr := l.Addr().String()
		must(t, l.Close())
		closed := good
		closed.Server = "https://" + addr
		r := only(t, ctx, calicoDir(t, closed))
		if r.Verdict != probe.Unreachable {
			t.Fatalf("%+v, want unreachable", r)
		}
	})

	// Last: the account's ClusterRoleBinding deleted, as the manifest to
	// operator migration left it. The token still authenticates; the
	// plugin's request is refused, and no new token would change that.
	t.Run("ClusterRoleBinding deleted is forbidden", func(t *testing.T) {
		must(t, cp.Client.RbacV1().ClusterRoleBindings().Delete(ctx, ns+"-calico-cni-plugin", metav1.DeleteOptions{}))
		want := probe.Access{Verb: "get", Group: "crd.projectcalico.org", Resource: "clusterinformations"}
		var r probe.Result
		e := &env{t: t, ctx: ctx}
		e.eventually(30*time.Second, "forbidden", func() error {
			r = only(t, ctx, calicoDir(t, good))
			if r.Verdict != probe.Forbidden {
				return fmt.Errorf("verdict %s: %s", r.Verdict, r.Message)
			}
			return nil
		})
		t.Logf("forbidden: %s", r.Message)
		if r.Refused == nil || *r.Refused != want {
			t.Fatalf("refused %+v, want %+v", r.Refused, want)
		}
		for _, s := range []string{"get clusterinformations.crd.projectcalico.org", subject, "ClusterRoleBinding calico-cni-plugin"} {
			if !strings.Contains(r.Message, s) {
				t.Errorf("message %q does not name %q", r.Message, s)
			}
		}
		if strings.Contains(r.Message, tok) {
			t.Error("the message holds the token")
		}
	})
}

// TestProbeMultusCredentialReadOnly: Multus's kubeconfig, found through
// the conf that points to it, judged by Multus's first request (a GET of
// the pod); when its account is deleted, the verdict is rejected and the
// file is left exactly as it was.
func TestProbeMultusCredentialReadOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("probe-%d", seq.Add(1))
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() { _ = cp.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	e := &env{t: t, ctx: ctx}

	cniAccount(t, ctx, ns, "multus", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}})
	tok, err := cp.TokenFor(ctx, ns, "multus", 0)
	must(t, err)

	// The agent reads the host's /etc/cni/net.d where it is mounted.
	dir := t.TempDir()
	const host = "/etc/cni/net.d"
	kubeconfigPath := filepath.Join(dir, "multus.d", "multus.kubeconfig")
	must(t, os.MkdirAll(filepath.Dir(kubeconfigPath), 0o755))
	kc := cniconf.Kubeconfig{Server: "https://" + cp.Host(), CAData: cp.CAData(), Token: tok}.Bytes()
	must(t, os.WriteFile(kubeconfigPath, kc, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "00-multus.conf"), []byte(`{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus",
		"kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","delegates":[{"cniVersion":"0.3.1","name":"k8s-pod-network",
		"plugins":[{"type":"portmap","capabilities":{"portMappings":true}}]}]}`), 0o644))
	before, err := os.Stat(kubeconfigPath)
	must(t, err)
	d := probe.Dir{Path: dir, HostPath: host, PodNamespace: ns}

	r := only(t, ctx, d)
	if r.Plugin != probe.PluginMultus || r.Path != "/etc/cni/net.d/multus.d/multus.kubeconfig" || r.Verdict != probe.OK {
		t.Fatalf("%+v, want multus's kubeconfig ok", r)
	}

	must(t, cp.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, "multus", metav1.DeleteOptions{}))
	e.eventually(30*time.Second, "rejected once the account is gone", func() error {
		r = only(t, ctx, d)
		if r.Verdict != probe.Rejected {
			return fmt.Errorf("verdict %s: %s", r.Verdict, r.Message)
		}
		return nil
	})
	t.Logf("rejected: %s", r.Message)
	after, err := os.Stat(kubeconfigPath)
	must(t, err)
	got, err := os.ReadFile(kubeconfigPath)
	must(t, err)
	if string(got) != string(kc) || !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Fatalf("the Multus kubeconfig changed (mode %s, was %s; mtime %s, was %s)", after.Mode(), before.Mode(), after.ModTime(), before.ModTime())
	}
}
