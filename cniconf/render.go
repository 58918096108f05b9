package cniconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// TokenPlaceholder is where a template wants the service-account token.
const TokenPlaceholder = "__SERVICEACCOUNT_TOKEN__"

// DefaultKubeconfigName is the kubeconfig file name Calico uses.
const DefaultKubeconfigName = "calico-kubeconfig"

// Inputs are everything a Calico template is rendered from. Env is consulted
// for the variables install-cni reads from its environment, so tests and the
// command can pass their own.
type Inputs struct {
	// Template is the cni_network_config text.
	Template string
	// Env looks up an environment variable; nil means no variable is set.
	Env func(key string) (string, bool)
	// FromCluster reports whether Env's value of a variable is set by the
	// cluster (install-cni's environment taking it from a ConfigMap key or
	// a literal on the DaemonSet) rather than by the environment of this
	// process. Such a value is no fact of the node: it is not recorded,
	// and a repair follows its changes. nil: every value is the process's.
	FromCluster func(key string) bool
	// NodeName fills __KUBERNETES_NODE_NAME__.
	NodeName string
	// NetDir is the CNI configuration directory as the node sees it.
	NetDir string
	// KubeconfigDir is the directory __KUBECONFIG_FILEPATH__ names: the
	// CNI directory as install-cni sees it (its CNI_NET_DIR); "" is NetDir.
	KubeconfigDir string
	// KubeconfigName is the kubeconfig's file name inside NetDir.
	KubeconfigName string
	// VethMTU and EtcdEndpoints are the ConfigMap's veth_mtu and
	// etcd_endpoints keys, used when the environment does not set them.
	VethMTU, EtcdEndpoints string
	// Token is the current service-account token.
	Token string
	// TokenFrom names where Token came from in errors (for example "token
	// file /run/token"); empty, "the service-account token".
	TokenFrom string
	// CA is the PEM the kubeconfig trusts; empty needs SKIP_TLS_VERIFY=true.
	CA []byte
	// FileExists reports whether a path exists; nil means os.Stat.
	FileExists func(path string) bool
}

// env looks a variable up as install-cni does (os.LookupEnv): a variable
// set to the empty string is the empty string, only an unset one takes def.
func (in *Inputs) env(key, def string) string {
	if v, ok := in.lookup(key); ok {
		return v
	}
	return def
}

func (in *Inputs) lookup(key string) (string, bool) {
	if in.Env == nil {
		return "", false
	}
	return in.Env(key)
}

func (in *Inputs) exists(path string) bool {
	if in.FileExists != nil {
		return in.FileExists(path)
	}
	_, err := os.Stat(path)
	return err == nil
}

func (in *Inputs) kubeconfigDir() string {
	if in.KubeconfigDir != "" {
		return in.KubeconfigDir
	}
	return in.NetDir
}

func (in *Inputs) kubeconfigName() string {
	if in.KubeconfigName == "" {
		return DefaultKubeconfigName
	}
	return in.KubeconfigName
}

// substitution is one placeholder and its value. secret values are never
// echoed in errors.
type substitution struct {
	placeholder, value, source string
	secret                     bool
}

// substitutions lists the placeholders in the order install-cni replaces
// them, so that a value which happens to contain a later placeholder comes
// out byte-identical to install-cni's file.
func (in *Inputs) substitutions(token string) []substitution {
	mtu, set := in.lookup("CNI_MTU")
	mtuSource := "env CNI_MTU"
	if !set && in.VethMTU != "" {
		mtu, mtuSource = in.VethMTU, "ConfigMap key veth_mtu"
	} else if !set {
		mtu, mtuSource = "1500", "the default"
	}
	etcd, set := in.lookup("ETCD_ENDPOINTS")
	etcdSource := "env ETCD_ENDPOINTS"
	if !set {
		etcd, etcdSource = in.EtcdEndpoints, "ConfigMap key etcd_endpoints"
	}
	tls := func(file string) string {
		p := filepath.Join(in.NetDir, "calico-tls", file)
		if in.exists(p) {
			return p
		}
		return ""
	}
	envSub := func(ph, key, def string) substitution {
		return substitution{placeholder: ph, value: in.env(key, def), source: "env " + key}
	}
	return []substitution{
		envSub("__LOG_LEVEL__", "LOG_LEVEL", "info"),
		envSub("__LOG_FILE_PATH__", "LOG_FILE_PATH", "/var/log/calico/cni/cni.log"),
		envSub("__LOG_FILE_MAX_SIZE__", "LOG_FILE_MAX_SIZE", "100"),
		envSub("__LOG_FILE_MAX_AGE__", "LOG_FILE_MAX_AGE", "30"),
		envSub("__LOG_FILE_MAX_COUNT__", "LOG_FILE_MAX_COUNT", "10"),
		envSub("__DATASTORE_TYPE__", "DATASTORE_TYPE", "kubernetes"),
		{placeholder: "__KUBERNETES_NODE_NAME__", value: in.NodeName, source: "the node name"},
		{placeholder: "__KUBECONFIG_FILEPATH__", value: filepath.Join(in.kubeconfigDir(), in.kubeconfigName()), source: "the CNI directory (CNI_NET_DIR or --cni-net-dir) and --cni-kubeconfig-name"},
		{placeholder: "__KUBECONFIG_FILENAME__", value: in.kubeconfigName(), source: "--cni-kubeconfig-name"},
		{placeholder: "__CNI_MTU__", value: mtu, source: mtuSource},
		envSub("__KUBERNETES_SERVICE_HOST__", "KUBERNETES_SERVICE_HOST", ""),
		envSub("__KUBERNETES_SERVICE_PORT__", "KUBERNETES_SERVICE_PORT", ""),
		{placeholder: TokenPlaceholder, value: token, source: in.tokenFrom(), secret: true},
		{placeholder: "__ETCD_CERT_FILE__", value: tls("etcd-cert"), source: "calico-tls/etcd-cert"},
		{placeholder: "__ETCD_CA_CERT_FILE__", value: tls("etcd-ca"), source: "calico-tls/etcd-ca"},
		{placeholder: "__ETCD_KEY_FILE__", value: tls("etcd-key"), source: "calico-tls/etcd-key"},
		{placeholder: "__ETCD_ENDPOINTS__", value: etcd, source: etcdSource},
		envSub("__ETCD_DISCOVERY_SRV__", "ETCD_DISCOVERY_SRV", ""),
		envSub("__CALICO_API_GROUP__", "CALICO_API_GROUP", "crd.projectcalico.org/v1"),
		envSub("__REQUIRE_MTU_FILE__", "REQUIRE_MTU_FILE", "false"),
	}
}

// tokenFrom names where the token came from, for errors.
func (in *Inputs) tokenFrom() string {
	if in.TokenFrom != "" {
		return in.TokenFrom
	}
	return "the service-account token"
}

// unfilled matches the placeholders Calico's manifests leave for the
// operator to fill in, such as <ETCD_IP> and <ETCD_PORT> in calico-etcd.yaml.
var unfilled = regexp.MustCompile(`<[A-Z][A-Z0-9_]*>`)

// checkValue refuses a value that could change the structure of the JSON it
// is pasted into. Nothing is escaped silently: the operator must fix the
// input.
func checkValue(s substitution) error {
	if m := unfilled.FindString(s.value); m != "" && !s.secret {
		return fmt.Errorf("%s value %q for %s still holds the placeholder %s that Calico's manifest asks you to fill in; set it to the real value", s.source, s.value, s.placeholder, m)
	}
	if !utf8.ValidString(s.value) {
		if s.secret {
			return fmt.Errorf("%s for %s is not valid UTF-8: no service-account token is; check where it comes from", s.source, s.placeholder)
		}
		return fmt.Errorf("%s value %q for %s is not valid UTF-8", s.source, s.value, s.placeholder)
	}
	for _, r := range s.value {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			if s.secret {
				return fmt.Errorf("%s for %s contains %q, which would change the JSON's structure", s.source, s.placeholder, r)
			}
			return fmt.Errorf("%s value %q for %s contains %q, which would change the JSON's structure", s.source, s.value, s.placeholder, r)
		}
	}
	return nil
}

// RenderTemplate substitutes every placeholder the way install-cni does and
// returns the text unchanged otherwise: no reformatting, no added newline.
// The result must be a JSON object.
func RenderTemplate(in *Inputs) ([]byte, error) {
	return in.render(in.Token)
}

func (in *Inputs) render(token string) ([]byte, error) {
	if strings.TrimSpace(in.Template) == "" {
		return nil, errors.New("cni_network_config template is empty or missing")
	}
	out := in.Template
	for _, s := range in.substitutions(token) {
		if !strings.Contains(out, s.placeholder) {
			continue
		}
		if s.secret && s.value == "" {
			return nil, fmt.Errorf("the template needs %s but no token is available", TokenPlaceholder)
		}
		if err := checkValue(s); err != nil {
			return nil, err
		}
		out = strings.ReplaceAll(out, s.placeholder, s.value)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		if bad := in.unquotedNonJSON(token); bad != nil {
			return nil, bad
		}
		return nil, fmt.Errorf("rendered cni_network_config is not a JSON object: %w", err)
	}
	return []byte(out), nil
}

// unquotedNonJSON names the value that broke the JSON when the template
// puts a placeholder outside quotes (as Calico does with __CNI_MTU__) and the
// value is no JSON value there: "auto" or "" for the MTU, say.
func (in *Inputs) unquotedNonJSON(token string) error {
	for _, s := range in.substitutions(token) {
		if s.secret || !unquotedIn(in.Template, s.placeholder) || json.Valid([]byte(s.value)) {
			continue
		}
		return fmt.Errorf("%s value %q for %s is not a number: the template uses it unquoted, so the rendered file would not be JSON; set it to a number such as 1440", s.source, s.value, s.placeholder)
	}
	return nil
}

// unquotedIn reports whether placeholder occurs in template outside a JSON
// string.
func unquotedIn(template, placeholder string) bool {
	for i := 0; ; {
		j := strings.Index(template[i:], placeholder)
		if j < 0 {
			return false
		}
		at := i + j
		if strings.Count(template[:at], `"`)%2 == 0 {
			return true
		}
		i = at + len(placeholder)
	}
}

// facts are the rendered values that come from the node rather than the
// cluster: what a repair from another shell could change by mistake. Only
// a value taken from a flag or from this process's environment is one; a
// value the cluster sets (FromCluster) is not.
func (in *Inputs) facts() map[string]string {
	m := map[string]string{}
	if strings.Contains(in.Template, "__KUBERNETES_NODE_NAME__") {
		m[FactNodeName] = in.NodeName
	}
	if (in.usesKubeconfig() || strings.Contains(in.Template, "__KUBERNETES_SERVICE_HOST__")) &&
		in.fromNode("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PROTOCOL") {
		if s, err := in.APIServer(); err == nil {
			m[FactAPIServer] = s
		}
	}
	if v, ok := in.lookup("CNI_MTU"); ok && in.fromNode("CNI_MTU") && strings.Contains(in.Template, "__CNI_MTU__") {
		m[FactMTU] = v
	}
	return m
}

// fromNode reports whether none of keys is set by the cluster.
func (in *Inputs) fromNode(keys ...string) bool {
	if in.FromCluster == nil {
		return true
	}
	for _, k := range keys {
		if in.FromCluster(k) {
			return false
		}
	}
	return true
}

// usesKubeconfig reports whether the template points the plugin at the
// calico-kubeconfig file, which must then be written too.
func (in *Inputs) usesKubeconfig() bool {
	return strings.Contains(in.Template, "__KUBECONFIG_FILEPATH__") ||
		strings.Contains(in.Template, "__KUBECONFIG_FILENAME__")
}

// APIServer returns the kubeconfig server URL from KUBERNETES_SERVICE_*,
// bracketing an IPv6 host as install-cni does.
func (in *Inputs) APIServer() (string, error) {
	host := in.env("KUBERNETES_SERVICE_HOST", "")
	port := in.env("KUBERNETES_SERVICE_PORT", "")
	if host == "" || port == "" {
		return "", errors.New("env KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set to write the calico-kubeconfig")
	}
	proto := in.env("KUBERNETES_SERVICE_PROTOCOL", "https")
	for key, v := range map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PROTOCOL": proto} {
		if err := checkValue(substitution{placeholder: "the kubeconfig's server", value: v, source: "env " + key}); err != nil {
			return "", err
		}
	}
	return proto + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}
