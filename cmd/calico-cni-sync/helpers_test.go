package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

// once runs --once and insists it succeeds.
func (n *node) once() {
	n.t.Helper()
	if code, out := n.run("--once"); code != 0 {
		n.t.Fatalf("--once exit %d: %s", code, out)
	}
}

func (n *node) editConfigMap(old, new string) {
	n.t.Helper()
	b, err := os.ReadFile(n.cm)
	must(n.t, err)
	if !strings.Contains(string(b), old) {
		n.t.Fatalf("ConfigMap lacks %q", old)
	}
	must(n.t, os.WriteFile(n.cm, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

func stateOf(s string) cniconf.State { return cniconf.State(s) }

// fileIn finds a file in a report.
func fileIn(t *testing.T, rep *reconcile.Report, name string) cniconf.FileStatus {
	t.Helper()
	for _, f := range rep.Files {
		if filepath.Base(f.Path) == name {
			return f
		}
	}
	t.Fatalf("report has no %s", name)
	return cniconf.FileStatus{}
}

// selfSignedCA is a real CA certificate in PEM: --ca-file is parsed.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
