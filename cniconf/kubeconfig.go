package cniconf

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
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
	return fmt.Appendf(nil, kubeconfigTemplate, k.Server, tls, yamlScalar(k.Token))
}

// jwtShape is a token that YAML reads back unchanged without quotes, as
// install-cni and calico-node write it: every token Kubernetes issues is a
// JWT. Anything else (a token pasted by hand, with a "#" or ": " in it, or
// one YAML would read as a number) is quoted so it cannot change the YAML.
var jwtShape = regexp.MustCompile(`^[A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

func yamlScalar(s string) string {
	if jwtShape.MatchString(s) {
		return s
	}
	// checkValue has refused quotes, backslashes and control characters,
	// so a JSON string is a valid YAML double-quoted scalar of s.
	return strconv.Quote(s)
}

// legacyMeaning is what version 1 records held of a kubeconfig: the
// cluster's server and how it is trusted.
func (k Kubeconfig) legacyMeaning() map[string]any {
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
	k, _, err := parseKubeconfig(data)
	return k, err
}

// parseKubeconfig also returns the index of the user whose token it read.
func parseKubeconfig(data []byte) (Kubeconfig, int, error) {
	var f kubeconfigFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return Kubeconfig{}, 0, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if len(f.Clusters) == 0 || len(f.Users) == 0 {
		return Kubeconfig{}, 0, errors.New("parse kubeconfig: no cluster or no user")
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
			return Kubeconfig{}, 0, fmt.Errorf("parse kubeconfig: certificate-authority-data: %w", err)
		}
		k.CAData = ca
	}
	return k, ui, nil
}

// parseKubeconfigSnapshot reads what a kubeconfig means: the whole document,
// every field of it, with the token of the user in use masked. Layout,
// quoting and comments are no difference (install-cni and calico-node write
// the same meaning in two layouts); a hand edit of any field is.
func parseKubeconfigSnapshot(data []byte, _ []TokenField) (snapshot, error) {
	k, ui, err := parseKubeconfig(data)
	if err != nil {
		return snapshot{}, err
	}
	doc, err := decodeYAMLMapping(data)
	if err != nil {
		return snapshot{}, fmt.Errorf("parse kubeconfig: %w", err)
	}
	// The server by meaning: install-cni v3.22-v3.30 brackets an IPv4
	// host too (https://[10.96.0.1]:443), v3.31.4-v3.31.7 leaves an IPv6
	// host bare; both mean what the canonical form says.
	if clusters, ok := doc["clusters"].([]any); ok {
		for _, c := range clusters {
			if cm, ok := c.(map[string]any); ok {
				if cl, ok := cm["cluster"].(map[string]any); ok {
					if srv, ok := cl["server"].(string); ok {
						cl["server"] = canonicalServer(srv)
					}
				}
			}
		}
	}
	if users, ok := doc["users"].([]any); ok && ui < len(users) {
		if u, ok := users[ui].(map[string]any); ok {
			if user, ok := u["user"].(map[string]any); ok {
				if _, has := user["token"]; has {
					user["token"] = tokenMask
				}
			}
		}
	}
	return snapshot{meaning: normalize(doc), tokens: []string{k.Token}}, nil
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
	if err := checkValue(substitution{placeholder: "the calico-kubeconfig's token", value: in.Token, source: in.tokenFrom(), secret: true}); err != nil {
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

// canonicalServer writes a server URL's host as net.JoinHostPort does:
// brackets around an IPv6 address only. A URL it cannot read is returned
// as it is.
func canonicalServer(server string) string {
	scheme, rest, ok := strings.Cut(server, "://")
	if !ok {
		return server
	}
	hostport, path := rest, ""
	if i := strings.Index(rest, "/"); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	i := strings.LastIndex(hostport, ":")
	if i < 0 || strings.HasSuffix(hostport, "]") {
		return server // no port
	}
	host, port := strings.Trim(hostport[:i], "[]"), hostport[i+1:]
	if host == "" || port == "" {
		return server
	}
	return scheme + "://" + net.JoinHostPort(host, port) + path
}
