package installcni

import corev1 "k8s.io/api/core/v1"

// OriginKind says where an install-cni variable's value is set, so that a
// lasting change can be made there.
type OriginKind string

// The places a value can come from.
const (
	// OriginValue is a literal value in the container's env.
	OriginValue OriginKind = "value"
	// OriginConfigMapKey is a key of a ConfigMap: valueFrom.configMapKeyRef,
	// or envFrom with the prefix stripped.
	OriginConfigMapKey OriginKind = "configMapKey"
	// OriginField is the downward API (the node name, the namespace).
	OriginField OriginKind = "field"
	// OriginService is the kubelet's variables for the kubernetes Service.
	OriginService OriginKind = "service"
	// OriginEmpty is an env entry with neither value nor valueFrom.
	OriginEmpty OriginKind = "empty"
)

// OperatorIgnoreAnnotation, set to "true" on an object the tigera operator
// manages, makes the operator stop updating that object
// (pkg/controller/utils: IgnoreObject): a cni-config so marked no longer
// follows the Installation.
const OperatorIgnoreAnnotation = "unsupported.operator.tigera.io/ignore"

// Origin is where one variable of install-cni's environment is set.
type Origin struct {
	Kind OriginKind
	// ConfigMap is namespace/name and Key the key, for OriginConfigMapKey.
	ConfigMap string
	Key       string
	// OperatorIgnored: the ConfigMap carries OperatorIgnoreAnnotation
	// "true", so the tigera operator no longer writes it.
	OperatorIgnored bool
}

// configMapOrigin is the origin of a key of cm.
func (rs *resolution) configMapOrigin(cm *corev1.ConfigMap, key string) Origin {
	return Origin{Kind: OriginConfigMapKey, ConfigMap: rs.namespace + "/" + cm.Name, Key: key,
		OperatorIgnored: cm.Annotations[OperatorIgnoreAnnotation] == "true"}
}

// origins records where each variable of c's environment is set, following
// the kubelet's order (envFrom, then env; a later entry wins). It is called
// after containerEnv resolved c strictly, so every source is one it can read.
func (rs *resolution) origins(c *corev1.Container) map[string]Origin {
	out := map[string]Origin{}
	for name := range rs.serviceEnv {
		out[name] = Origin{Kind: OriginService}
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		cm := rs.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			continue
		}
		for k := range cm.Data {
			out[from.Prefix+k] = rs.configMapOrigin(cm, k)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.Value != "":
			out[e.Name] = Origin{Kind: OriginValue}
		case e.ValueFrom == nil:
			out[e.Name] = Origin{Kind: OriginEmpty}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			if cm := rs.configMaps[ref.Name]; cm != nil {
				if _, ok := cm.Data[ref.Key]; ok {
					out[e.Name] = rs.configMapOrigin(cm, ref.Key)
				}
			}
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = Origin{Kind: OriginField}
		}
	}
	return out
}
