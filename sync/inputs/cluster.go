package inputs

import "github.com/calico-cni-sync/calico-cni-sync/sync/installcni"

// SetByCluster reports whether the value Env gives a variable is set by the
// cluster: install-cni's environment takes it from a ConfigMap key, a
// literal or the downward API, or source configmap from calico-config. A
// variable with no origin comes from this process's environment, and so do
// the kubernetes Service's variables the kubelet gives install-cni and the
// agent alike.
func (in *Install) SetByCluster(key string) bool {
	o, ok := in.Origins[key]
	return ok && o.Kind != installcni.OriginService
}
