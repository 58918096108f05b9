package reconcile

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/probe"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// selfSignedCA is a CA that signed nothing the test server presents.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// probedReconciler is the v3.32 fixture rendered for an API server at
// srv (a TLS test server that answers Calico's first request), with a
// prober and a verdict cache whose review accepts every token.
func probedReconciler(t *testing.T, srv *httptest.Server, ca []byte) *Reconciler {
	t.Helper()
	cm := fixtureConfigMap(t)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KUBERNETES_SERVICE_HOST": u.Hostname(), "KUBERNETES_SERVICE_PORT": u.Port()}
	r := testReconciler(t, inputs.InstallFromConfigMap(func(context.Context) (*corev1.ConfigMap, error) { return cm.DeepCopy(), nil }, inputs.KeyTemplate, "",
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, inputs.SourceInfo{Kind: inputs.SourceConfigMap}))
	r.CA = func() ([]byte, error) { return ca, nil }
	r.CAOrigin = "--ca-file ca.crt"
	r.Probe = &probe.Prober{}
	r.CAChecks = &CAChecks{}
	r.CheckTokens = true
	r.Verdicts = &token.VerdictCache{Period: time.Hour, Check: func(context.Context, string) *bool { return ptr(true) }}
	return r
}

// TestUntrustedCAReplacedOnlyByOneThatVerifies: the kubeconfig's CA does
// not verify the API server. The CA the agent has replaces it when a
// handshake shows it verifies the server; when it does not, or when it is
// the CA on disk already, nothing is written and the file's status says
// why.
func TestUntrustedCAReplacedOnlyByOneThatVerifies(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	onDisk, other := selfSignedCA(t), selfSignedCA(t)
	for _, tc := range []struct {
		name      string
		agentCA   []byte
		repaired  bool
		statusSay string
	}{
		{name: "the agent's CA verifies the server", agentCA: good, repaired: true},
		{name: "the agent's CA does not", agentCA: other, statusSay: "and the CA the agent has (--ca-file ca.crt) does not either"},
		{name: "the agent's CA is the one on disk", agentCA: onDisk, statusSay: "it is the CA the agent has (--ca-file ca.crt): no CA the agent has can repair it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probedReconciler(t, srv, tc.agentCA)
			ctx := context.Background()
			if _, _, err := r.Reconcile(ctx, ModeSync); err != nil {
				t.Fatal(err)
			}
			// Another writer leaves the file with a CA that verifies
			// nothing here; the agent starts afresh.
			path := filepath.Join(r.Dir.NetDir, cniconf.DefaultKubeconfigName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := cniconf.ParseKubeconfig(b)
			if err != nil {
				t.Fatal(err)
			}
			k.CAData = onDisk
			if err := os.WriteFile(path, k.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			before := k.Bytes()
			r.Verdicts = &token.VerdictCache{Period: time.Hour, Check: r.Verdicts.Check}
			var rep *Report
			for range 3 {
				if rep, _, err = r.Reconcile(ctx, ModeSync); err != nil {
					t.Fatal(err)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cniconf.ParseKubeconfig(after)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.repaired {
				if !bytes.Equal(after, before) {
					t.Fatalf("the kubeconfig was written with a CA that does not verify the server:\n%s", after)
				}
				if rep.Token.Verdict != string(probe.Untrusted) {
					t.Fatalf("verdict %q, want untrusted", rep.Token.Verdict)
				}
				for _, f := range rep.Files {
					if f.Path == path && !strings.Contains(f.Message, tc.statusSay) {
						t.Fatalf("the kubeconfig's status %q does not say %q", f.Message, tc.statusSay)
					}
				}
				return
			}
			if !bytes.Equal(got.CAData, good) || got.Token != k.Token {
				t.Fatalf("after the repair: the server's CA %v, the token kept %v", bytes.Equal(got.CAData, good), got.Token == k.Token)
			}
			if rep.Token.Verdict != string(probe.OK) {
				t.Fatalf("verdict %q after the repair, want ok", rep.Token.Verdict)
			}
		})
	}
}
