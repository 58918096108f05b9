package probe

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// FromKubeconfig reads a plugin's kubeconfig with the one parser the
// product has for it (cniconf's): the server, CA data, insecure flag and
// token of the current context. A kubeconfig that names its CA by file
// (certificate-authority) or authenticates by client certificate is read
// without them: no installer of a covered plugin writes one so.
func FromKubeconfig(data []byte) (Credential, error) {
	k, err := cniconf.ParseKubeconfig(data)
	if err != nil {
		return Credential{}, err
	}
	return Credential{Server: k.Server, CAData: k.CAData, Insecure: k.Insecure, Token: k.Token}, nil
}

// calicoEntry holds the fields of Calico's plugin entry that say how it
// reaches the API server.
type calicoEntry struct {
	Kubernetes struct {
		Kubeconfig string `json:"kubeconfig"`
		K8sAPIRoot string `json:"k8s_api_root"`
	} `json:"kubernetes"`
	Policy struct {
		K8sAPIRoot              string `json:"k8s_api_root"`
		K8sAuthToken            string `json:"k8s_auth_token"`
		K8sClientCertificate    string `json:"k8s_client_certificate"`
		K8sClientKey            string `json:"k8s_client_key"`
		K8sCertificateAuthority string `json:"k8s_certificate_authority"`
	} `json:"policy"`
}

// legacy reports a v2.x entry: its credential is (partly) in the conf.
func (e calicoEntry) legacy() bool {
	return e.Policy.K8sAPIRoot != "" || e.Policy.K8sAuthToken != ""
}

// FromCalicoEntry is the credential Calico's plugin builds from its conf
// entry, merged as its newK8sClient merges it: the kubeconfig the entry
// names (read through read, which maps the host path it names), overridden
// by policy.k8s_api_root (up to "/api/"), policy.k8s_auth_token, the
// policy's client certificate, key and CA file, and kubernetes.k8s_api_root.
// A CA file in the conf replaces the kubeconfig's CA data, as clientcmd's
// overrides do. Paths in the result are the host's, mapped by mapPath.
func FromCalicoEntry(entry []byte, read func(hostPath string) ([]byte, error), mapPath func(string) string) (Credential, error) {
	var e calicoEntry
	if err := json.Unmarshal(entry, &e); err != nil {
		return Credential{}, fmt.Errorf("parse Calico's conf: %w", err)
	}
	var cred Credential
	if e.Kubernetes.Kubeconfig != "" {
		data, err := read(e.Kubernetes.Kubeconfig)
		switch {
		case err == nil:
			if cred, err = FromKubeconfig(data); err != nil {
				return Credential{}, fmt.Errorf("%s: %w", e.Kubernetes.Kubeconfig, err)
			}
		case !e.legacy():
			return Credential{}, err
		}
		// A v2.x conf carries its own server and token: a kubeconfig it
		// names but that is not there is not needed for them.
	}
	if root := e.Policy.K8sAPIRoot; root != "" {
		server, _, _ := strings.Cut(root, "/api/")
		cred.Server = strings.TrimSuffix(server, "/")
	}
	if e.Policy.K8sAuthToken != "" {
		cred.Token = e.Policy.K8sAuthToken
	}
	if e.Policy.K8sClientCertificate != "" {
		cred.CertFile = mapPath(e.Policy.K8sClientCertificate)
	}
	if e.Policy.K8sClientKey != "" {
		cred.KeyFile = mapPath(e.Policy.K8sClientKey)
	}
	if e.Policy.K8sCertificateAuthority != "" {
		cred.CAFile, cred.CAData = mapPath(e.Policy.K8sCertificateAuthority), nil
	}
	if e.Kubernetes.K8sAPIRoot != "" {
		cred.Server = e.Kubernetes.K8sAPIRoot
	}
	if cred.Server == "" {
		return Credential{}, fmt.Errorf("calico's conf names no API server (no kubeconfig, no k8s_api_root)")
	}
	return cred, nil
}
