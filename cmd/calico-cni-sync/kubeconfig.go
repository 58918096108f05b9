package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

// errNoKubeconfig is returned when none of kubectl's sources gives a
// configuration. Offline use tells it apart from a kubeconfig that is wrong.
var errNoKubeconfig = errors.New("no kubeconfig")

// inClusterToken is where the kubelet mounts a pod's service-account token;
// client-go looks there too, and so only says that it did.
const inClusterToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// restConfig finds the tool's own credentials as kubectl does: --kubeconfig,
// else $KUBECONFIG, else ~/.kube/config, else in-cluster. The order is
// client-go's; what is added here is saying, when it fails, where it
// looked and why each source did not do.
func restConfig(o *Options) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context}).ClientConfig()
	switch {
	case err == nil:
		return cfg, nil
	case clientcmd.IsEmptyConfig(err):
		return nil, fmt.Errorf("%w: tried %s; give --kubeconfig", errNoKubeconfig, strings.Join(triedSources(rules), ", "))
	}
	for _, f := range kubeconfigFiles(rules) {
		if _, statErr := os.Stat(f.path); f.label != "--kubeconfig" && statErr != nil {
			continue // client-go skips a missing file of $KUBECONFIG
		}
		if ferr := checkKubeconfigFile(f.label, f.path); ferr != nil {
			return nil, ferr
		}
	}
	return nil, fmt.Errorf("load kubeconfig: %w", err)
}

type kubeconfigFile struct{ label, path string }

// kubeconfigFiles are the files the rules read, each with how a user would
// name it.
func kubeconfigFiles(rules *clientcmd.ClientConfigLoadingRules) []kubeconfigFile {
	if rules.ExplicitPath != "" {
		return []kubeconfigFile{{"--kubeconfig", rules.ExplicitPath}}
	}
	label := "kubeconfig"
	if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
		label = "$KUBECONFIG file"
	}
	var out []kubeconfigFile
	for _, p := range rules.GetLoadingPrecedence() {
		out = append(out, kubeconfigFile{label, p})
	}
	return out
}

// triedSources says, for each of kubectl's sources, why it gave nothing.
func triedSources(rules *clientcmd.ClientConfigLoadingRules) []string {
	var tried []string
	if rules.ExplicitPath == "" {
		tried = append(tried, "--kubeconfig (not given)")
		if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
			tried = append(tried, "$KUBECONFIG (not set)")
		}
	}
	for _, f := range kubeconfigFiles(rules) {
		state := "no current-context"
		if _, err := os.Stat(f.path); err != nil {
			state = "no such file"
		}
		tried = append(tried, fmt.Sprintf("%s %s (%s)", f.label, f.path, state))
	}
	switch _, err := os.Stat(inClusterToken); {
	case os.Getenv("KUBERNETES_SERVICE_HOST") == "" || os.Getenv("KUBERNETES_SERVICE_PORT") == "":
		tried = append(tried, "in-cluster (KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT not set)")
	case err != nil:
		tried = append(tried, "in-cluster (no service-account token at "+inClusterToken+")")
	default:
		tried = append(tried, "in-cluster")
	}
	return tried
}

// checkKubeconfigFile explains why a kubeconfig file does not load, in a
// line: client-go's decoder names Go types ("cannot unmarshal string into
// Go value of type struct { APIVersion string ...").
func checkKubeconfigFile(label, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return fmt.Errorf("%s %s: %w", label, path, err)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if yaml.Unmarshal(data, &head) != nil {
		return fmt.Errorf("%s %s is not a kubeconfig: not a YAML or JSON object (a token or a certificate?)", label, path)
	}
	if head.Kind != "" && head.Kind != "Config" {
		return fmt.Errorf("%s %s is not a kubeconfig: its kind is %s, not Config", label, path, head.Kind)
	}
	var cfg clientcmdv1.Config
	err = yaml.Unmarshal(data, &cfg)
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("%s %s is not a kubeconfig: field %q has the wrong type", label, path, typeErr.Field)
	case err != nil:
		return fmt.Errorf("%s %s is not a kubeconfig: %w", label, path, err)
	}
	if _, err := clientcmd.Load(data); err != nil {
		return fmt.Errorf("%s %s: %w", label, path, err)
	}
	return nil
}

// apiCA is the CA the agent itself trusts, the last fallback for the
// kubeconfig it writes.
func apiCA(cfg *rest.Config) []byte {
	if len(cfg.CAData) > 0 {
		return cfg.CAData
	}
	if cfg.CAFile != "" {
		if b, err := os.ReadFile(cfg.CAFile); err == nil {
			return b
		}
	}
	return nil
}

// clientFor builds the API client unless the command runs offline. When
// some offline inputs are given and no kubeconfig is found, the error says
// which offline input is missing: that, not the kubeconfig, is what the
// user most likely forgot.
func clientFor(o *Options) (*rest.Config, kubernetes.Interface, error) {
	if o.offline() {
		return nil, nil, nil
	}
	cfg, err := restConfig(o)
	if err != nil {
		if missing := o.missingForOffline(); missing != "" && errors.Is(err, errNoKubeconfig) {
			return nil, nil, fmt.Errorf("%s; for online use, %w", missing, err)
		}
		return nil, nil, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, client, nil
}

func newClient(cfg *rest.Config) (kubernetes.Interface, error) {
	cfg.UserAgent = "calico-cni-sync/" + buildVersion(version, readBuildInfo())
	// A few requests per second per node: idle, the agent makes none
	// beyond its watches; a pass makes a handful (a condition patch, a
	// Lease, a token check), and Events go through a client of their own.
	// Across thousands of nodes this is what bounds the API server's load
	// when they all act at once.
	cfg.QPS, cfg.Burst = 5, 10
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	return client, nil
}
