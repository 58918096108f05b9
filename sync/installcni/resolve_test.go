package installcni

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testTemplate = `{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": [{"type": "calico", "mtu": __CNI_MTU__}]}`

func ptr[T any](v T) *T { return &v }

func cmKey(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: ptr(optional),
	}}
}

func field(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func configMap(name string, data map[string]string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name}, Data: data}
}

// calicoConfig is the ConfigMap most cases read.
var calicoConfig = configMap("calico-config", map[string]string{"cni_network_config": testTemplate, "veth_mtu": "1440"})

// withTemplate is install-cni's usual first variable.
var withTemplate = corev1.EnvVar{Name: "CNI_NETWORK_CONFIG", ValueFrom: cmKey("calico-config", "cni_network_config", false)}

// testDaemonSet is a v3.x-shaped DaemonSet: install-cni an init container
// that mounts cni-net-dir at /host/etc/cni/net.d, and calico-node.
func testDaemonSet(install corev1.Container, node corev1.Container) *appsv1.DaemonSet {
	if install.Name == "" {
		install.Name = "install-cni"
	}
	if install.VolumeMounts == nil {
		install.VolumeMounts = []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d"}}
	}
	if node.Name == "" {
		node.Name = "calico-node"
	}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "calico-node"},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			ServiceAccountName: "calico-node",
			InitContainers:     []corev1.Container{install},
			Containers:         []corev1.Container{node},
			Volumes: []corev1.Volume{{Name: "cni-net-dir", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/etc/cni/net.d"},
			}}},
		}}},
	}
}

// failingLookup fails every read, as a 403 would.
type failingLookup struct{ err error }

func (f failingLookup) ConfigMap(string, string) (*corev1.ConfigMap, error) { return nil, f.err }
func (f failingLookup) ServiceAccountExists(string, string) (bool, error)   { return false, f.err }

func TestResolveEnv(t *testing.T) {
	cases := []struct {
		name       string
		env        []corev1.EnvVar
		envFrom    []corev1.EnvFromSource
		configMaps []corev1.ConfigMap
		want       map[string]string // besides CNI_NETWORK_CONFIG and the service variables
		wantErr    []string          // substrings of the error
	}{
		{
			name: "$(VAR) references to earlier variables and to the kubelet's",
			env: []corev1.EnvVar{
				{Name: "LATER", Value: "$(A)"}, // A is not defined yet: left as is
				{Name: "A", Value: "x"},
				{Name: "B", Value: "$(A)-$(KUBERNETES_SERVICE_HOST)-$(UNKNOWN)-$$(A)"},
				{Name: "A", Value: "y"},
			},
			want: map[string]string{"LATER": "$(A)", "A": "y", "B": "x-10.96.0.1-$(UNKNOWN)-$(A)"},
		},
		{
			name: "a $(VAR) reference to a configMapKeyRef variable",
			env: []corev1.EnvVar{
				{Name: "MTU", ValueFrom: cmKey("calico-config", "veth_mtu", false)},
				{Name: "CNI_MTU", Value: "$(MTU)"},
			},
			want: map[string]string{"MTU": "1440", "CNI_MTU": "1440"},
		},
		{
			name: "empty value and no source is the empty string",
			env:  []corev1.EnvVar{{Name: "CNI_MTU"}},
			want: map[string]string{"CNI_MTU": ""},
		},
		{
			name: "optional configMapKeyRef to a missing ConfigMap leaves the variable unset",
			env:  []corev1.EnvVar{{Name: "CNI_MTU", ValueFrom: cmKey("absent", "veth_mtu", true)}},
			want: map[string]string{},
		},
		{
			name: "optional configMapKeyRef to a missing key keeps an earlier value",
			env: []corev1.EnvVar{
				{Name: "CNI_MTU", Value: "1400"},
				{Name: "CNI_MTU", ValueFrom: cmKey("calico-config", "no_such_key", true)},
			},
			want: map[string]string{"CNI_MTU": "1400"},
		},
		{
			name:    "required configMapKeyRef to a missing ConfigMap",
			env:     []corev1.EnvVar{{Name: "CNI_MTU", ValueFrom: cmKey("absent", "veth_mtu", false)}},
			wantErr: []string{"kube-system/calico-node", "install-cni", "CNI_MTU", "kube-system/absent", "veth_mtu", "not found"},
		},
		{
			name:    "required configMapKeyRef to a missing key",
			env:     []corev1.EnvVar{{Name: "CNI_MTU", ValueFrom: cmKey("calico-config", "mtu", false)}},
			wantErr: []string{"CNI_MTU", "kube-system/calico-config", "no key mtu"},
		},
		{
			name: "secretKeyRef",
			env: []corev1.EnvVar{{Name: "ETCD_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "etcd"}, Key: "key",
			}}}},
			wantErr: []string{"ETCD_KEY", "secretKeyRef", "kube-system/etcd"},
		},
		{
			name: "resourceFieldRef",
			env: []corev1.EnvVar{{Name: "CPU", ValueFrom: &corev1.EnvVarSource{
				ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"},
			}}},
			wantErr: []string{"CPU", "resourceFieldRef"},
		},
		{
			name:    "fieldRef the contract does not name",
			env:     []corev1.EnvVar{{Name: "POD_IP", ValueFrom: field("status.podIP")}},
			wantErr: []string{"POD_IP", "status.podIP"},
		},
		{
			name: "fieldRefs the contract names",
			env: []corev1.EnvVar{
				{Name: "KUBERNETES_NODE_NAME", ValueFrom: field("spec.nodeName")},
				{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
				{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
			},
			want: map[string]string{"KUBERNETES_NODE_NAME": "node-1", "SA": "calico-node", "NS": "kube-system"},
		},
		{
			name: "envFrom first, then env, which wins",
			envFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}}},
				{Prefix: "P_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}}},
			},
			env:        []corev1.EnvVar{{Name: "CNI_MTU", Value: "1450"}, {Name: "FROM", Value: "$(LOG_LEVEL)"}},
			configMaps: []corev1.ConfigMap{configMap("extra", map[string]string{"CNI_MTU": "1400", "LOG_LEVEL": "debug"})},
			want: map[string]string{
				"CNI_MTU": "1450", "LOG_LEVEL": "debug", "FROM": "debug", "P_CNI_MTU": "1400", "P_LOG_LEVEL": "debug",
			},
		},
		{
			name: "envFrom overrides the kubelet's service variables (Calico's kubernetes-services-endpoint)",
			envFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kubernetes-services-endpoint"}, Optional: ptr(true),
			}}},
			configMaps: []corev1.ConfigMap{configMap("kubernetes-services-endpoint", map[string]string{
				"KUBERNETES_SERVICE_HOST": "172.18.0.2", "KUBERNETES_SERVICE_PORT": "6443",
			})},
			want: map[string]string{"KUBERNETES_SERVICE_HOST": "172.18.0.2", "KUBERNETES_SERVICE_PORT": "6443"},
		},
		{
			name: "envFrom of a missing required ConfigMap",
			envFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "absent"},
			}}},
			wantErr: []string{"envFrom", "kube-system/absent", "not found"},
		},
		{
			name: "envFrom of a Secret",
			envFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"},
			}}},
			wantErr: []string{"envFrom Secret kube-system/creds"},
		},
		{
			name:    "CNI_NETWORK_CONFIG_FILE in env",
			env:     []corev1.EnvVar{{Name: "CNI_NETWORK_CONFIG_FILE", Value: "/etc/template.json"}},
			wantErr: []string{"CNI_NETWORK_CONFIG_FILE"},
		},
		{
			name: "CNI_NETWORK_CONFIG_FILE through envFrom",
			envFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "extra"},
			}}},
			configMaps: []corev1.ConfigMap{configMap("extra", map[string]string{"CNI_NETWORK_CONFIG_FILE": "/t.json"})},
			wantErr:    []string{"CNI_NETWORK_CONFIG_FILE"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := testDaemonSet(corev1.Container{EnvFrom: c.envFrom, Env: append([]corev1.EnvVar{withTemplate}, c.env...)}, corev1.Container{})
			lk := &Manifest{ConfigMaps: append([]corev1.ConfigMap{calicoConfig}, c.configMaps...)}
			got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1", AgentEnv: agentEnv}, lk)
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("Resolve succeeded with %v, want an error", got.Env)
				}
				for _, s := range c.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"CNI_NETWORK_CONFIG":      testTemplate,
				"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
			}
			for k, v := range c.want {
				want[k] = v
			}
			if !reflect.DeepEqual(got.Env, want) {
				t.Errorf("env:\n got %v\nwant %v", got.Env, want)
			}
			if got.Template != testTemplate {
				t.Errorf("template %q", got.Template)
			}
		})
	}
}

func TestResolveConfigMapsRead(t *testing.T) {
	ds := testDaemonSet(corev1.Container{
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "kubernetes-services-endpoint"}, Optional: ptr(true),
		}}},
		Env: []corev1.EnvVar{
			withTemplate,
			{Name: "CNI_MTU", ValueFrom: cmKey("calico-config", "veth_mtu", false)},
			{Name: "X", ValueFrom: cmKey("other", "x", true)},
			{Name: "Y", ValueFrom: cmKey("more", "no_such_key", true)},
		},
	}, corev1.Container{})
	lk := &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig, configMap("more", nil)}}
	got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, lk)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kube-system/calico-config", "kube-system/more"}; !reflect.DeepEqual(got.ConfigMaps, want) {
		t.Errorf("ConfigMaps = %v, want %v", got.ConfigMaps, want)
	}
	if want := []string{"kube-system/kubernetes-services-endpoint", "kube-system/other"}; !reflect.DeepEqual(got.AbsentConfigMaps, want) {
		t.Errorf("AbsentConfigMaps = %v, want %v", got.AbsentConfigMaps, want)
	}
	// No agent environment: the kubelet's variables are simply not there.
	if _, ok := got.Env["KUBERNETES_SERVICE_HOST"]; ok {
		t.Errorf("KUBERNETES_SERVICE_HOST set without an agent environment: %v", got.Env)
	}
}

func TestResolveLookupError(t *testing.T) {
	forbidden := errors.New("configmaps \"calico-config\" is forbidden")
	ds := testDaemonSet(corev1.Container{Env: []corev1.EnvVar{withTemplate}}, corev1.Container{})
	_, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, failingLookup{forbidden})
	if !errors.Is(err, forbidden) {
		t.Fatalf("error %v does not wrap the lookup's", err)
	}
	if !strings.Contains(err.Error(), "kube-system/calico-config") {
		t.Errorf("error %q does not name the ConfigMap", err)
	}
}
