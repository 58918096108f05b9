package installcni

import (
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resolution holds what one Resolve call knows about the pod and what it has
// read, so that every ConfigMap is looked up once and both containers see the
// same snapshot.
type resolution struct {
	lookup         Lookup
	namespace      string
	nodeName       string
	serviceAccount string
	// serviceEnv is what the kubelet injects into every container for the
	// default/kubernetes Service, used only for names the container leaves
	// unset (and for $(VAR) references to them).
	serviceEnv map[string]string
	// configMaps caches lookups by name in the namespace; nil: not found.
	configMaps map[string]*corev1.ConfigMap
}

// containerEnv resolves c's environment as the kubelet's
// makeEnvironmentVariables does: envFrom first, then env in order.
//
// With want nil every variable is resolved and any source the agent cannot
// read is an error. With want given, only the env entries those variables
// can depend on are evaluated (so a Secret or an unsupported fieldRef behind
// an unrelated variable of calico-node does not matter), and the result holds
// just the wanted variables that are set.
func (rs *resolution) containerEnv(c *corev1.Container, want []string) (map[string]string, error) {
	strict := want == nil
	var needed map[string]bool
	if !strict {
		needed = neededVars(c.Env, want)
	}
	env := map[string]string{}
	unknown := map[string]error{} // lenient mode: variables whose value cannot be known
	setByEnv := map[string]bool{}
	opaque := "" // lenient mode: an envFrom Secret, which may define any variable

	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := rs.configMap(from.ConfigMapRef.Name, isTrue(from.ConfigMapRef.Optional))
			if err != nil {
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			if cm == nil {
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			if strict {
				return nil, fmt.Errorf("envFrom Secret %s/%s is not supported: the agent reads no Secrets; move those variables to a ConfigMap",
					rs.namespace, from.SecretRef.Name)
			}
			if opaque == "" {
				opaque = rs.namespace + "/" + from.SecretRef.Name
			}
		}
	}

	lookup := func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		v, ok := rs.serviceEnv[name]
		return v, ok
	}
	set := func(name, value string) {
		env[name] = value
		setByEnv[name] = true
		delete(unknown, name)
	}
	for _, e := range c.Env {
		if !strict && !needed[e.Name] {
			continue
		}
		switch {
		case e.Value != "":
			var dependsOn error
			v := expandVars(e.Value, func(name string) (string, bool) {
				switch {
				case dependsOn != nil:
				case unknown[name] != nil:
					dependsOn = unknown[name]
				case opaque != "" && !setByEnv[name]:
					dependsOn = fmt.Errorf("%s may be set by envFrom Secret %s, which the agent cannot read", name, opaque)
				}
				return lookup(name)
			})
			if dependsOn != nil {
				unknown[e.Name] = fmt.Errorf("env %s refers to a variable that cannot be resolved: %w", e.Name, dependsOn)
				continue
			}
			set(e.Name, v)
		case e.ValueFrom == nil:
			set(e.Name, "")
		default:
			v, ok, err := rs.valueFrom(e.ValueFrom)
			if err != nil {
				err = fmt.Errorf("env %s: %w", e.Name, err)
				if strict {
					return nil, err
				}
				unknown[e.Name] = err
				continue
			}
			if ok {
				set(e.Name, v)
			}
		}
	}

	if !strict {
		out := map[string]string{}
		for _, name := range want {
			if err := unknown[name]; err != nil {
				return nil, err
			}
			if !setByEnv[name] && opaque != "" {
				return nil, fmt.Errorf("env %s may be set by envFrom Secret %s, which the agent cannot read (it reads no Secrets): set %s in env",
					name, opaque, name)
			}
			if v, ok := env[name]; ok {
				out[name] = v
			}
		}
		return out, nil
	}
	for name, v := range rs.serviceEnv {
		if _, ok := env[name]; !ok {
			env[name] = v
		}
	}
	return env, nil
}

// neededVars is every variable the wanted ones may depend on through $(VAR)
// references, found walking the env list backwards (a value can refer only
// to variables defined before it). It over-approximates, which is harmless.
func neededVars(env []corev1.EnvVar, want []string) map[string]bool {
	needed := map[string]bool{}
	for _, name := range want {
		needed[name] = true
	}
	for i := len(env) - 1; i >= 0; i-- {
		if !needed[env[i].Name] || env[i].Value == "" {
			continue
		}
		expandVars(env[i].Value, func(name string) (string, bool) {
			needed[name] = true
			return "", false
		})
	}
	return needed
}

// valueFrom resolves one env source; ok is false when an optional
// ConfigMap or key is missing, and the kubelet then leaves the variable as
// it was.
func (rs *resolution) valueFrom(src *corev1.EnvVarSource) (value string, ok bool, err error) {
	switch {
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		optional := isTrue(ref.Optional)
		cm, err := rs.configMap(ref.Name, optional)
		if err != nil {
			return "", false, fmt.Errorf("valueFrom.configMapKeyRef key %s: %w", ref.Key, err)
		}
		if cm == nil {
			return "", false, nil
		}
		v, found := cm.Data[ref.Key]
		if !found {
			if optional {
				return "", false, nil
			}
			return "", false, fmt.Errorf("ConfigMap %s/%s has no key %s: add it, or mark the reference optional",
				rs.namespace, ref.Name, ref.Key)
		}
		return v, true, nil
	case src.FieldRef != nil:
		v, err := rs.fieldRef(src.FieldRef)
		return v, err == nil, err
	case src.SecretKeyRef != nil:
		return "", false, fmt.Errorf("valueFrom.secretKeyRef (Secret %s/%s, key %s) is not supported: the agent reads no Secrets",
			rs.namespace, src.SecretKeyRef.Name, src.SecretKeyRef.Key)
	case src.ResourceFieldRef != nil:
		return "", false, fmt.Errorf("valueFrom.resourceFieldRef %s is not supported", src.ResourceFieldRef.Resource)
	case src.FileKeyRef != nil:
		return "", false, errors.New("valueFrom.fileKeyRef is not supported: the file is on a volume the agent cannot read")
	default:
		return "", false, errors.New("valueFrom names no source")
	}
}

// fieldRef resolves the downward-API fields the contract names; the others
// (pod IP, labels, ...) depend on a running pod and are refused.
func (rs *resolution) fieldRef(fs *corev1.ObjectFieldSelector) (string, error) {
	if fs.APIVersion != "" && fs.APIVersion != "v1" {
		return "", fmt.Errorf("valueFrom.fieldRef apiVersion %q is not supported", fs.APIVersion)
	}
	switch fs.FieldPath {
	case "spec.nodeName":
		if rs.nodeName == "" {
			return "", errors.New("valueFrom.fieldRef spec.nodeName: the node name is unknown; give it")
		}
		return rs.nodeName, nil
	case "spec.serviceAccountName":
		return rs.serviceAccount, nil
	case "metadata.namespace":
		return rs.namespace, nil
	default:
		return "", fmt.Errorf("valueFrom.fieldRef %s is not supported (only spec.nodeName, spec.serviceAccountName and metadata.namespace)",
			fs.FieldPath)
	}
}

// configMap looks a ConfigMap of the namespace up once. A missing one is an
// error unless optional, as it is for the kubelet, which then does not start
// the container.
func (rs *resolution) configMap(name string, optional bool) (*corev1.ConfigMap, error) {
	cm, seen := rs.configMaps[name]
	if !seen {
		var err error
		cm, err = rs.lookup.ConfigMap(rs.namespace, name)
		if err != nil {
			return nil, fmt.Errorf("get ConfigMap %s/%s: %w", rs.namespace, name, err)
		}
		rs.configMaps[name] = cm
	}
	if cm == nil && !optional {
		return nil, fmt.Errorf("ConfigMap %s/%s not found (the kubelet would not start the container either): create it, or mark the reference optional",
			rs.namespace, name)
	}
	return cm, nil
}

// configMapsRead lists the ConfigMaps looked up as namespace/name: those
// found, and those absent (optional references whose creation would change
// the environment).
func (rs *resolution) configMapsRead() (found, absent []string) {
	for name, cm := range rs.configMaps {
		key := rs.namespace + "/" + name
		if cm != nil {
			found = append(found, key)
		} else {
			absent = append(absent, key)
		}
	}
	sort.Strings(found)
	sort.Strings(absent)
	return found, absent
}

// configMapMeta is the metadata of the ConfigMaps found, sorted by name.
func (rs *resolution) configMapMeta() []metav1.ObjectMeta {
	names := make([]string, 0, len(rs.configMaps))
	for name, cm := range rs.configMaps {
		if cm != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]metav1.ObjectMeta, len(names))
	for i, name := range names {
		out[i] = rs.configMaps[name].ObjectMeta
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }
