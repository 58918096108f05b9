package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TokenFor returns a real token signed by the API server's current key via
// the TokenRequest API, creating the namespace and service account if they
// do not exist, so tests get the same kind of token a pod would. ttl <= 0
// uses the server default; the API server rejects ttl below 10 minutes.
func (c *ControlPlane) TokenFor(ctx context.Context, namespace, serviceAccount string, ttl time.Duration) (string, error) {
	if err := c.ensureServiceAccount(ctx, namespace, serviceAccount); err != nil {
		return "", fmt.Errorf("request token: %w", err)
	}
	req := &authnv1.TokenRequest{}
	if ttl > 0 {
		secs := int64(ttl / time.Second)
		req.Spec.ExpirationSeconds = &secs
	}
	resp, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request token for %s/%s: %w", namespace, serviceAccount, err)
	}
	return resp.Status.Token, nil
}

// ConfigForToken returns a config for the same host and CA that
// authenticates only with the given bearer token, so tests see exactly what
// that identity may do.
func (c *ControlPlane) ConfigForToken(token string) *rest.Config {
	return &rest.Config{
		Host:            "https://" + c.host,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
		BearerToken:     token,
		QPS:             1000,
		Burst:           2000,
	}
}

// WriteKubeconfig writes a kubeconfig file for cfg (server, CA data, and
// either its bearer token or its client certificate and key) so that a
// separate process can be pointed at this control plane with --kubeconfig.
// Empty server or CA in cfg default to this control plane's.
func (c *ControlPlane) WriteKubeconfig(path string, cfg *rest.Config) error {
	cluster := clientcmdapi.NewCluster()
	cluster.Server = cfg.Host
	if cluster.Server == "" {
		cluster.Server = "https://" + c.host
	}
	cluster.CertificateAuthorityData = cfg.CAData
	cluster.CertificateAuthority = cfg.CAFile
	if len(cfg.CAData) == 0 && cfg.CAFile == "" {
		cluster.CertificateAuthorityData = c.CAData()
	}

	user := clientcmdapi.NewAuthInfo()
	switch {
	case cfg.BearerToken != "" || cfg.BearerTokenFile != "":
		user.Token = cfg.BearerToken
		user.TokenFile = cfg.BearerTokenFile
	case (len(cfg.CertData) > 0 || cfg.CertFile != "") && (len(cfg.KeyData) > 0 || cfg.KeyFile != ""):
		user.ClientCertificateData = cfg.CertData
		user.ClientCertificate = cfg.CertFile
		user.ClientKeyData = cfg.KeyData
		user.ClientKey = cfg.KeyFile
	default:
		return errors.New("write kubeconfig: config has neither a bearer token nor a client certificate and key")
	}

	kc := clientcmdapi.NewConfig()
	kc.Clusters["controlplane"] = cluster
	kc.AuthInfos["user"] = user
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = "controlplane"
	kctx.AuthInfo = "user"
	kc.Contexts["controlplane"] = kctx
	kc.CurrentContext = "controlplane"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// newClient builds a clientset, wrapping the error for context.
func newClient(cfg *rest.Config) (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return cs, nil
}
