package cniconf

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Kubeconfig is what the calico-kubeconfig means: where the API server is,
// how it is trusted, and the token. Two files that mean the same are equal
// whatever their layout.
type Kubeconfig struct {
	Server   string
	CAData   []byte
	Insecure bool
	Token    string
}

// kubeconfigTemplate is the layout calico/node writes, so a file we write is
// the file an operator already knows.
const kubeconfigTemplate = `# Kubeconfig file for Calico CNI plugin. Installed by calico/node.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    %s
users:
- name: calico
  user:
    token: %s
contexts:
- name: calico-context
  context:
    cluster: local
    user: calico
current-context: calico-context`

// Bytes renders the kubeconfig in calico/node's layout.
func (k Kubeconfig) Bytes() []byte {
	tls := `certificate-authority-data: "` + base64.StdEncoding.EncodeToString(k.CAData) + `"`
	if k.Insecure {
		tls = "insecure-skip-tls-verify: true"
	}
	return fmt.Appendf(nil, kubeconfigTemplate, k.Server, tls, k.Token)
}

// meaning is the token-free part of the kubeconfig, as a document whose
// paths name the fields that differ.
func (k Kubeconfig) meaning() map[string]any {
	cluster := map[string]any{"server": k.Server}
	if k.Insecure {
		cluster["insecure-skip-tls-verify"] = true
	} else {
		cluster["certificate-authority-data"] = string(k.CAData)
	}
	return map[string]any{"cluster": cluster}
}

type kubeconfigFile struct {
	Clusters []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server   string `json:"server"`
			CAData   string `json:"certificate-authority-data"`
			Insecure bool   `json:"insecure-skip-tls-verify"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token string `json:"token"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	CurrentContext string `json:"current-context"`
}

// ParseKubeconfig reads the cluster and user the current context names (or
// the first of each when there is no context).
func ParseKubeconfig(data []byte) (Kubeconfig, error) {
	var f kubeconfigFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return Kubeconfig{}, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if len(f.Clusters) == 0 || len(f.Users) == 0 {
		return Kubeconfig{}, errors.New("parse kubeconfig: no cluster or no user")
	}
	ci, ui := 0, 0
	for _, c := range f.Contexts {
		if c.Name != f.CurrentContext {
			continue
		}
		for i := range f.Clusters {
			if f.Clusters[i].Name == c.Context.Cluster {
				ci = i
			}
		}
		for i := range f.Users {
			if f.Users[i].Name == c.Context.User {
				ui = i
			}
		}
	}
	cl := f.Clusters[ci].Cluster
	k := Kubeconfig{Server: cl.Server, Insecure: cl.Insecure, Token: f.Users[ui].User.Token}
	if cl.CAData != "" {
		ca, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cl.CAData))
		if err != nil {
			return Kubeconfig{}, fmt.Errorf("parse kubeconfig: certificate-authority-data: %w", err)
		}
		k.CAData = ca
	}
	return k, nil
}

// DesiredKubeconfig builds the calico-kubeconfig from the inputs: the API
// server from KUBERNETES_SERVICE_*, the CA (or SKIP_TLS_VERIFY=true), and the
// token.
func (in *Inputs) DesiredKubeconfig() (Kubeconfig, error) {
	server, err := in.APIServer()
	if err != nil {
		return Kubeconfig{}, err
	}
	if in.Token == "" {
		return Kubeconfig{}, errors.New("the calico-kubeconfig needs a token but none is available")
	}
	if err := checkValue(substitution{placeholder: "token", value: in.Token, source: "the service-account token", secret: true}); err != nil {
		return Kubeconfig{}, err
	}
	k := Kubeconfig{Server: server, Token: in.Token}
	if in.env("SKIP_TLS_VERIFY", "") == "true" {
		k.Insecure = true
		return k, nil
	}
	if len(in.CA) == 0 {
		return Kubeconfig{}, errors.New("no CA for the calico-kubeconfig: the token Secret has no ca.crt; pass --ca-file or set SKIP_TLS_VERIFY=true")
	}
	k.CAData = in.CA
	return k, nil
}
