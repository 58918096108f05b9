package installcni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Manifest is what a manifest holds that resolution can use offline: the
// DaemonSets, ConfigMaps and ServiceAccounts. It is a Lookup.
type Manifest struct {
	DaemonSets      []appsv1.DaemonSet
	ConfigMaps      []corev1.ConfigMap
	ServiceAccounts []corev1.ServiceAccount
}

// daemonSetAPIVersions are the DaemonSet versions a manifest may use. The
// beta ones (Calico v2.x manifests use extensions/v1beta1) decode into
// apps/v1 as they are: every field resolution reads has the same name and
// meaning in all three.
var daemonSetAPIVersions = map[string]bool{"apps/v1": true, "apps/v1beta2": true, "extensions/v1beta1": true}

// ParseManifest reads a stream of YAML documents or JSON objects, such as
// Calico's calico.yaml or the output of kubectl get -o yaml|json (a List,
// or a typed list such as ConfigMapList, included). Objects of other kinds
// are skipped; an object of a kind it keeps in an unknown apiVersion, a
// document that is not an object, or the same object twice is an error.
// An object without a namespace is in "default", where kubectl apply would
// put it.
func ParseManifest(data []byte) (*Manifest, error) {
	m := &Manifest{}
	seen := map[string]int{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse manifest document %d: %w", doc, err)
		}
		if err := m.add(raw, "", "", doc, seen, true); err != nil {
			return nil, fmt.Errorf("parse manifest document %d: %w", doc, err)
		}
	}
}

// add keeps one object, or the items of a list; apiVersion and kind are the
// defaults a typed list gives its items.
func (m *Manifest) add(raw json.RawMessage, apiVersion, kind string, doc int, seen map[string]int, listOK bool) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] != '{' {
		return errors.New("not an object")
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	if head.APIVersion == "" {
		head.APIVersion = apiVersion
	}
	if head.Kind == "" {
		head.Kind = kind
	}

	if strings.HasSuffix(head.Kind, "List") {
		if !listOK {
			return fmt.Errorf("a %s inside a list", head.Kind)
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%s: %w", head.Kind, err)
		}
		itemKind := strings.TrimSuffix(head.Kind, "List")
		for i, item := range list.Items {
			if err := m.add(item, head.APIVersion, itemKind, doc, seen, false); err != nil {
				return fmt.Errorf("%s item %d: %w", head.Kind, i+1, err)
			}
		}
		return nil
	}

	var meta *metav1.ObjectMeta
	switch head.Kind {
	case "DaemonSet":
		if !daemonSetAPIVersions[head.APIVersion] {
			return fmt.Errorf("DaemonSet in apiVersion %q: want apps/v1 (or apps/v1beta2, extensions/v1beta1)", head.APIVersion)
		}
		var ds appsv1.DaemonSet
		if err := json.Unmarshal(raw, &ds); err != nil {
			return fmt.Errorf("DaemonSet: %w", err)
		}
		ds.APIVersion, ds.Kind = "apps/v1", "DaemonSet"
		m.DaemonSets = append(m.DaemonSets, ds)
		meta = &m.DaemonSets[len(m.DaemonSets)-1].ObjectMeta
	case "ConfigMap", "ServiceAccount":
		if head.APIVersion != "v1" {
			return fmt.Errorf("%s in apiVersion %q: want v1", head.Kind, head.APIVersion)
		}
		if head.Kind == "ConfigMap" {
			var cm corev1.ConfigMap
			if err := json.Unmarshal(raw, &cm); err != nil {
				return fmt.Errorf("ConfigMap: %w", err)
			}
			m.ConfigMaps = append(m.ConfigMaps, cm)
			meta = &m.ConfigMaps[len(m.ConfigMaps)-1].ObjectMeta
		} else {
			var sa corev1.ServiceAccount
			if err := json.Unmarshal(raw, &sa); err != nil {
				return fmt.Errorf("ServiceAccount: %w", err)
			}
			m.ServiceAccounts = append(m.ServiceAccounts, sa)
			meta = &m.ServiceAccounts[len(m.ServiceAccounts)-1].ObjectMeta
		}
	default:
		return nil
	}

	if meta.Name == "" {
		return fmt.Errorf("%s without metadata.name", head.Kind)
	}
	if meta.Namespace == "" {
		meta.Namespace = "default"
	}
	key := head.Kind + " " + meta.Namespace + "/" + meta.Name
	if first, ok := seen[key]; ok {
		return fmt.Errorf("%s is also in document %d: keep one", key, first)
	}
	seen[key] = doc
	return nil
}

// DaemonSet returns the DaemonSet namespace/name of the manifest, or nil.
func (m *Manifest) DaemonSet(namespace, name string) *appsv1.DaemonSet {
	for i := range m.DaemonSets {
		if m.DaemonSets[i].Namespace == namespace && m.DaemonSets[i].Name == name {
			return &m.DaemonSets[i]
		}
	}
	return nil
}

// FindDaemonSet returns the first of Candidates the manifest holds.
func (m *Manifest) FindDaemonSet() (*appsv1.DaemonSet, error) {
	var looked []string
	for _, c := range Candidates() {
		if ds := m.DaemonSet(c.Namespace, c.Name); ds != nil {
			return ds, nil
		}
		looked = append(looked, c.String())
	}
	held := make([]string, 0, len(m.DaemonSets))
	for i := range m.DaemonSets {
		held = append(held, m.DaemonSets[i].Namespace+"/"+m.DaemonSets[i].Name)
	}
	return nil, fmt.Errorf("the manifest holds none of the DaemonSets %s (it holds [%s]): name the one to use",
		strings.Join(looked, ", "), strings.Join(held, ", "))
}

// ConfigMap implements Lookup.
func (m *Manifest) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	for i := range m.ConfigMaps {
		if m.ConfigMaps[i].Namespace == namespace && m.ConfigMaps[i].Name == name {
			return &m.ConfigMaps[i], nil
		}
	}
	return nil, nil
}

// ServiceAccountExists implements Lookup. A manifest without any
// ServiceAccount cannot tell; the caller decides what that means.
func (m *Manifest) ServiceAccountExists(namespace, name string) (bool, error) {
	for i := range m.ServiceAccounts {
		if m.ServiceAccounts[i].Namespace == namespace && m.ServiceAccounts[i].Name == name {
			return true, nil
		}
	}
	return false, nil
}
