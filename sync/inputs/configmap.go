package inputs

import (
	"context"
	"fmt"
	"os"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	if err := cniconf.CheckYAMLKeys(data); err != nil {
		return nil, fmt.Errorf("parse --configmap-file %s: %w", path, err)
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
		ctx, cancel := context.WithTimeout(ctx, APITimeout)
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
