package cniconf

import (
	"fmt"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
)

// decodeYAMLMapping reads a YAML mapping as sigs.k8s.io/yaml (and so
// client-go, and so the CNI plugin) resolves its values, but refuses a
// mapping key that is not a string. sigs.k8s.io/yaml turns the keys 0, "0"
// and 0.0 into one JSON key and keeps whichever its map iteration meets
// last, so a document with such keys has no one meaning: read twice, it can
// read two ways. No kubeconfig or ConfigMap anyone writes has such a key.
//
// It reads the document once, in order (yaml.v2's MapSlice, the decoder
// sigs.k8s.io/yaml uses), so a key written twice keeps its last value, as
// sigs.k8s.io/yaml does.
func decodeYAMLMapping(data []byte) (map[string]any, error) {
	var doc yamlv2.MapSlice
	if err := yamlv2.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	v, err := stringKeyed(doc, "")
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}

// CheckYAMLKeys refuses a YAML document with a mapping key that is not a
// string (see decodeYAMLMapping). Call it before sigs.k8s.io/yaml reads a
// document a person wrote, so the same file always means the same thing. A
// document that is not a mapping at the top passes: its own reader says
// what is wrong with it.
func CheckYAMLKeys(data []byte) error {
	var doc yamlv2.MapSlice
	if yamlv2.Unmarshal(data, &doc) != nil {
		return nil
	}
	_, err := stringKeyed(doc, "")
	return err
}

func stringKeyed(v any, path string) (any, error) {
	switch t := v.(type) {
	case yamlv2.MapSlice:
		if t == nil {
			return map[string]any(nil), nil
		}
		m := make(map[string]any, len(t))
		for _, item := range t {
			k, ok := item.Key.(string)
			if !ok {
				return nil, fmt.Errorf("the key %v at %s is not a string (YAML reads it as %T): it can be read more than one way; quote it", item.Key, pathOrTop(path), item.Key)
			}
			val, err := stringKeyed(item.Value, path+"."+k)
			if err != nil {
				return nil, err
			}
			m[k] = val
		}
		return m, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			val, err := stringKeyed(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = val
		}
		return out, nil
	default:
		return v, nil
	}
}

func pathOrTop(path string) string {
	if path == "" {
		return "the top"
	}
	return strings.TrimPrefix(path, ".")
}
