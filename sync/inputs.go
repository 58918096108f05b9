package sync

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Keys read from calico-config.
const (
	KeyTemplate      = "cni_network_config"
	KeyVethMTU       = "veth_mtu"
	KeyEtcdEndpoints = "etcd_endpoints"
)

// LoadConfigMapFile reads a ConfigMap manifest as kubectl prints it (YAML or
// JSON).
func LoadConfigMapFile(path string) (*corev1.ConfigMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --configmap-file: %w", err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return nil, fmt.Errorf("parse --configmap-file %s: %w", path, err)
	}
	if cm.Kind != "" && cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("parse --configmap-file %s: kind is %q, not ConfigMap", path, cm.Kind)
	}
	return &cm, nil
}

// ConfigMapSource gives the current calico-config.
type ConfigMapSource func(ctx context.Context) (*corev1.ConfigMap, error)

// ConfigMapFromFile reads the manifest at every call, so a repaired file is
// picked up.
func ConfigMapFromFile(path string) ConfigMapSource {
	return func(context.Context) (*corev1.ConfigMap, error) { return LoadConfigMapFile(path) }
}

// EmptyConfigMap is no ConfigMap: --cni-network-config-file alone, offline.
func EmptyConfigMap(context.Context) (*corev1.ConfigMap, error) { return &corev1.ConfigMap{}, nil }

// ConfigMapFromAPI reads the ConfigMap with one GET.
func ConfigMapFromAPI(client kubernetes.Interface, namespace, name string) ConfigMapSource {
	return func(ctx context.Context) (*corev1.ConfigMap, error) {
		ctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ConfigMap %s/%s not found", namespace, name)
		}
		if err != nil {
			return nil, fmt.Errorf("get ConfigMap %s/%s: %w", namespace, name, err)
		}
		return cm, nil
	}
}

// TokenNeed is what a token is asked for.
type TokenNeed struct {
	// Account is the CNI service account.
	Account Account
	// InConf: the template embeds the token in the conf, as Calico v2.x and
	// v3.0 did, whose install-cni took it from the legacy token Secret.
	InConf bool
}

// TokenSource gives the current token.
type TokenSource interface {
	Token(ctx context.Context, need TokenNeed) (Token, error)
}

// TokenSourceFunc adapts a function.
type TokenSourceFunc func(ctx context.Context, need TokenNeed) (Token, error)

// Token calls f.
func (f TokenSourceFunc) Token(ctx context.Context, need TokenNeed) (Token, error) {
	return f(ctx, need)
}

// AutoToken is --token-source=auto: the legacy token Secret when the
// template puts the token in the conf (Calico v2.x/v3.0), else a bound token
// from the TokenRequest API. No Secret is read to decide.
type AutoToken struct {
	Secret, Request TokenSource
}

// Invalidate tells the TokenRequest source its token is dead.
func (a AutoToken) Invalidate() {
	if inv, ok := a.Request.(invalidator); ok {
		inv.Invalidate()
	}
}

// Token asks the source the need calls for.
func (a AutoToken) Token(ctx context.Context, need TokenNeed) (Token, error) {
	if need.InConf {
		return a.Secret.Token(ctx, need)
	}
	return a.Request.Token(ctx, need)
}

// TokenFromFile reads a token file (a projected token, or one an operator
// saved) at every call.
func TokenFromFile(path string) TokenSource {
	return TokenSourceFunc(func(context.Context, TokenNeed) (Token, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return Token{}, fmt.Errorf("read --token-file: %w", err)
		}
		t := strings.TrimSpace(string(data))
		if t == "" {
			return Token{}, fmt.Errorf("--token-file %s is empty", path)
		}
		if strings.Contains(t, "-----BEGIN") {
			return Token{}, fmt.Errorf("--token-file %s holds a PEM block, not a token: are --token-file and --ca-file swapped?", path)
		}
		return Token{Value: t, Source: SourceFile, File: path}, nil
	})
}

// TokenSecretSelector selects the Secrets a token can come from; the API
// server supports the type field selector for Secrets.
var TokenSecretSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)).String()

// PickTokenSecret chooses, among Secrets, the service account's newest token
// Secret (by creationTimestamp, then name) whose token is populated. That is
// how the token is followed when its Secret is deleted and recreated under
// another name.
func PickTokenSecret(secrets []*corev1.Secret, serviceAccount string) (*corev1.Secret, error) {
	var cands []*corev1.Secret
	for _, s := range secrets {
		if s.Type == corev1.SecretTypeServiceAccountToken &&
			s.Annotations[corev1.ServiceAccountNameKey] == serviceAccount &&
			len(s.Data[corev1.ServiceAccountTokenKey]) > 0 && s.DeletionTimestamp == nil {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no populated token Secret for service account %q (type %s, annotation %s)",
			serviceAccount, corev1.SecretTypeServiceAccountToken, corev1.ServiceAccountNameKey)
	}
	sort.Slice(cands, func(i, j int) bool {
		ti, tj := cands[i].CreationTimestamp, cands[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return cands[i].Name > cands[j].Name
	})
	return cands[0], nil
}

// TokenFromSecret turns a token Secret into a Token.
func TokenFromSecret(s *corev1.Secret) (Token, error) {
	t := strings.TrimSpace(string(s.Data[corev1.ServiceAccountTokenKey]))
	if t == "" {
		return Token{}, fmt.Errorf("token Secret %s/%s has no token yet", s.Namespace, s.Name)
	}
	return Token{Value: t, Source: SourceSecret, Secret: s.Name, CA: s.Data[corev1.ServiceAccountRootCAKey]}, nil
}

// SecretTokenFromAPI reads the token with one request: a GET of the pinned
// Secret, or a LIST of the account's namespace's token Secrets.
func SecretTokenFromAPI(client kubernetes.Interface, pinned string) TokenSource {
	return TokenSourceFunc(func(ctx context.Context, need TokenNeed) (Token, error) {
		ctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		namespace, serviceAccount := need.Account.Namespace, need.Account.Name
		if pinned != "" {
			s, err := client.CoreV1().Secrets(namespace).Get(ctx, pinned, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return Token{}, fmt.Errorf("--token-secret %s/%s not found", namespace, pinned)
			}
			if err != nil {
				return Token{}, fmt.Errorf("get Secret %s/%s: %w", namespace, pinned, err)
			}
			return TokenFromSecret(s)
		}
		list, err := client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{FieldSelector: TokenSecretSelector})
		if err != nil {
			return Token{}, fmt.Errorf("list token Secrets in %s: %w", namespace, err)
		}
		ptrs := make([]*corev1.Secret, len(list.Items))
		for i := range list.Items {
			ptrs[i] = &list.Items[i]
		}
		s, err := PickTokenSecret(ptrs, serviceAccount)
		if err != nil {
			return Token{}, err
		}
		return TokenFromSecret(s)
	})
}
