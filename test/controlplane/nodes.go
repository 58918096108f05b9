package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ServiceIP is the cluster IP of the `kubernetes` Service (the first address
// of the service range), the address the kubelet gives every pod as
// KUBERNETES_SERVICE_HOST. With Options.Nodes the serving certificate is
// valid for it, so a test that routes it to the API server (a DNAT rule
// standing in for kube-proxy) gives pods a working in-cluster config.
const ServiceIP = "10.0.0.1"

// nodeControllers are what a kubelet's node needs beyond the token
// controllers: DaemonSet pods, their removal when the DaemonSet goes, and
// the kube-root-ca.crt ConfigMap that every projected token volume mounts.
const nodeControllers = "daemonset-controller,garbage-collector-controller,root-ca-certificate-publisher-controller"

// configureNodes sets what a cluster with real kubelets needs: the
// ServiceAccount admission plugin (pods get their token volume) and
// NodeRestriction (a kubelet may change only its own Node and pods), and a
// serving certificate valid for the `kubernetes` Service's names and IP.
func (c *ControlPlane) configureNodes(args *envtest.Arguments, certDir string) error {
	args.Set("disable-admission-plugins", "")
	args.Set("enable-admission-plugins", "ServiceAccount,NodeRestriction")
	caPEM, err := writeServingCert(certDir, []string{"localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(ServiceIP)})
	if err != nil {
		return err
	}
	c.caData = caPEM
	return nil
}

// writeServingCert writes a CA and apiserver.crt/apiserver.key signed by it
// into certDir (where envtest's API server looks, and where envtest then
// makes no certificate of its own) and returns the CA's PEM.
func writeServingCert(certDir string, names []string, ips []net.IP) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "controlplane-serving-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: names, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"apiserver.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// AddUser returns a client-certificate config for a user the API server
// authenticates as name in groups, e.g. a kubelet's
// ("system:node:NAME", "system:nodes").
func (c *ControlPlane) AddUser(name string, groups ...string) (*rest.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, err := c.plane.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{QPS: 50, Burst: 100})
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", name, err)
	}
	cfg := rest.CopyConfig(u.Config())
	cfg.Host = "https://" + c.host
	cfg.CAData = c.CAData()
	return cfg, nil
}

// AdminKubeconfig is the path of a system:masters kubeconfig for processes
// the tests start (kubectl, kube-scheduler).
func (c *ControlPlane) AdminKubeconfig() string { return c.kubecfg }

// startScheduler starts kube-scheduler, which binds DaemonSet pods to nodes
// (the DaemonSet controller sets node affinity, not spec.nodeName).
func (c *ControlPlane) startScheduler() error {
	args := []string{
		"--kubeconfig=" + c.kubecfg,
		"--authentication-kubeconfig=" + c.kubecfg,
		"--authorization-kubeconfig=" + c.kubecfg,
		"--leader-elect=false",
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--v=1",
	}
	p, err := startProcess("kube-scheduler", filepath.Join(c.binDir, "kube-scheduler"), args,
		filepath.Join(c.dir, "kube-scheduler.log"))
	if err != nil {
		return fmt.Errorf("start kube-scheduler: %w", err)
	}
	c.scheduler = p
	return nil
}
