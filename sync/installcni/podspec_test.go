package installcni

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResolveContainerChoice(t *testing.T) {
	t.Run("no install-cni container", func(t *testing.T) {
		ds := testDaemonSet(corev1.Container{Name: "flexvol-driver"}, corev1.Container{})
		_, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, &Manifest{})
		if err == nil || !strings.Contains(err.Error(), "kube-system/calico-node") || !strings.Contains(err.Error(), "no install-cni container") {
			t.Fatalf("error %v, want one naming the DaemonSet and install-cni", err)
		}
	})
	t.Run("a container named otherwise whose env sets CNI_NETWORK_CONFIG", func(t *testing.T) {
		ds := testDaemonSet(corev1.Container{Name: "cni-installer", Env: []corev1.EnvVar{withTemplate}}, corev1.Container{})
		got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Container != "cni-installer" || got.Template != testTemplate {
			t.Errorf("container %q, template %q", got.Container, got.Template)
		}
	})
	t.Run("install-cni as a regular container (Calico v2.x)", func(t *testing.T) {
		ds := testDaemonSet(corev1.Container{Name: "flexvol-driver"}, corev1.Container{})
		spec := &ds.Spec.Template.Spec
		spec.Containers = append(spec.Containers, corev1.Container{
			Name: "install-cni", Env: []corev1.EnvVar{withTemplate},
			VolumeMounts: []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d"}},
		})
		got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Container != "install-cni" || got.Template != testTemplate {
			t.Errorf("container %q, template %q", got.Container, got.Template)
		}
	})
	t.Run("no CNI_NETWORK_CONFIG: the template is empty, not invented", func(t *testing.T) {
		ds := testDaemonSet(corev1.Container{}, corev1.Container{})
		got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, &Manifest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Env["CNI_NETWORK_CONFIG"]; ok || got.Template != "" {
			t.Errorf("template %q, env %v", got.Template, got.Env)
		}
	})
}

// This node's pod, not the template, is what a restart would run: during a
// rolling update the two differ.
func TestResolvePodOverTemplate(t *testing.T) {
	install := corev1.Container{Env: []corev1.EnvVar{
		withTemplate,
		{Name: "CNI_MTU", Value: "1440"},
		{Name: "KUBERNETES_NODE_NAME", ValueFrom: field("spec.nodeName")},
	}}
	ds := testDaemonSet(install, corev1.Container{})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "calico-node-abcde"},
		Spec:       *ds.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = "node-7"
	pod.Spec.InitContainers[0].Env[1].Value = "1400"
	lk := &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig}}

	fromTemplate, err := Resolve(Request{DaemonSet: ds, NodeName: "node-7"}, lk)
	if err != nil {
		t.Fatal(err)
	}
	fromPod, err := Resolve(Request{DaemonSet: ds, Pod: pod}, lk)
	if err != nil {
		t.Fatal(err)
	}
	if fromTemplate.Env["CNI_MTU"] != "1440" || fromTemplate.Pod != "" {
		t.Errorf("template: CNI_MTU %q, pod %q", fromTemplate.Env["CNI_MTU"], fromTemplate.Pod)
	}
	if fromPod.Env["CNI_MTU"] != "1400" || fromPod.Pod != "calico-node-abcde" {
		t.Errorf("pod: CNI_MTU %q, pod %q", fromPod.Env["CNI_MTU"], fromPod.Pod)
	}
	if fromPod.Env["KUBERNETES_NODE_NAME"] != "node-7" {
		t.Errorf("pod: KUBERNETES_NODE_NAME %q, want the pod's node", fromPod.Env["KUBERNETES_NODE_NAME"])
	}

	pod.Namespace = "calico-system"
	if _, err := Resolve(Request{DaemonSet: ds, Pod: pod}, lk); err == nil {
		t.Error("a pod of another namespace was accepted")
	}
}

func TestResolveFieldRefWithoutNodeName(t *testing.T) {
	ds := testDaemonSet(corev1.Container{Env: []corev1.EnvVar{{Name: "KUBERNETES_NODE_NAME", ValueFrom: field("spec.nodeName")}}}, corev1.Container{})
	_, err := Resolve(Request{DaemonSet: ds}, &Manifest{})
	if err == nil || !strings.Contains(err.Error(), "KUBERNETES_NODE_NAME") {
		t.Fatalf("error %v, want one naming KUBERNETES_NODE_NAME", err)
	}
}

func TestResolveCalicoNode(t *testing.T) {
	secretRef := &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "etcd"}, Key: "key",
	}}
	cases := []struct {
		name       string
		node       corev1.Container
		noNode     bool
		manage     bool
		configMaps []string
		wantErr    string
	}{
		{name: "CALICO_MANAGE_CNI unset", manage: true},
		{name: "CALICO_MANAGE_CNI true", node: corev1.Container{Env: []corev1.EnvVar{{Name: "CALICO_MANAGE_CNI", Value: "true"}}}, manage: true},
		{name: "CALICO_MANAGE_CNI false", node: corev1.Container{Env: []corev1.EnvVar{{Name: "CALICO_MANAGE_CNI", Value: "false"}}}},
		{
			name: "CALICO_MANAGE_CNI from a ConfigMap through a reference",
			node: corev1.Container{Env: []corev1.EnvVar{
				{Name: "M", ValueFrom: cmKey("node-settings", "manage", false)},
				{Name: "CALICO_MANAGE_CNI", Value: "$(M)"},
			}},
			configMaps: []string{"kube-system/calico-config", "kube-system/node-settings"},
		},
		{name: "no calico-node container", noNode: true},
		{
			// calico-node's other variables are not install-cni's business: a
			// Secret or another ConfigMap behind them is not even read.
			name: "unrelated variables are not resolved",
			node: corev1.Container{Env: []corev1.EnvVar{
				{Name: "ETCD_KEY", ValueFrom: secretRef},
				{Name: "POD_IP", ValueFrom: field("status.podIP")},
				{Name: "BACKEND", ValueFrom: cmKey("not-read", "backend", false)},
			}},
			manage: true,
		},
		{
			name: "CALICO_MANAGE_CNI from a Secret",
			node: corev1.Container{Env: []corev1.EnvVar{
				{Name: "S", ValueFrom: secretRef},
				{Name: "CALICO_MANAGE_CNI", Value: "$(S)"},
			}},
			wantErr: "CALICO_MANAGE_CNI",
		},
		{
			name: "a later literal makes an earlier Secret irrelevant",
			node: corev1.Container{Env: []corev1.EnvVar{
				{Name: "CALICO_MANAGE_CNI", ValueFrom: secretRef},
				{Name: "CALICO_MANAGE_CNI", Value: "false"},
			}},
		},
		{
			name: "an envFrom Secret may set CALICO_MANAGE_CNI",
			node: corev1.Container{EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"},
			}}}},
			wantErr: "envFrom Secret kube-system/creds",
		},
		{
			name: "a reference to a variable an envFrom Secret may set",
			node: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}},
				Env:     []corev1.EnvVar{{Name: "CALICO_MANAGE_CNI", Value: "$(MANAGE)"}, {Name: "CALICO_CNI_SERVICE_ACCOUNT", Value: "cni"}},
			},
			wantErr: "MANAGE may be set by envFrom Secret kube-system/creds",
		},
		{
			name: "an envFrom Secret is harmless when env sets both variables",
			node: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}},
				Env:     []corev1.EnvVar{{Name: "CALICO_MANAGE_CNI", Value: "true"}, {Name: "CALICO_CNI_SERVICE_ACCOUNT", Value: "cni"}},
			},
			manage: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := testDaemonSet(corev1.Container{Env: []corev1.EnvVar{withTemplate}}, c.node)
			if c.noNode {
				ds.Spec.Template.Spec.Containers = nil
			}
			lk := &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig, configMap("node-settings", map[string]string{"manage": "false"})}}
			got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, lk)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "container calico-node") {
					t.Fatalf("error %v, want one naming calico-node and %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ManageCNI != c.manage {
				t.Errorf("ManageCNI = %v, want %v", got.ManageCNI, c.manage)
			}
			want := c.configMaps
			if want == nil {
				want = []string{"kube-system/calico-config"}
			}
			if strings.Join(got.ConfigMaps, ",") != strings.Join(want, ",") || len(got.AbsentConfigMaps) != 0 {
				t.Errorf("ConfigMaps %v, absent %v, want %v", got.ConfigMaps, got.AbsentConfigMaps, want)
			}
		})
	}
}

func TestResolveCNIServiceAccount(t *testing.T) {
	sa := func(name string) corev1.ServiceAccount {
		return corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name}}
	}
	cases := []struct {
		name       string
		installEnv []corev1.EnvVar
		nodeEnv    []corev1.EnvVar
		accounts   []corev1.ServiceAccount
		podAccount string
		deprecated string
		want       string
		wantFrom   AccountSource
	}{
		{
			name:       "install-cni's env first",
			installEnv: []corev1.EnvVar{{Name: "CALICO_CNI_SERVICE_ACCOUNT", ValueFrom: field("spec.serviceAccountName")}},
			nodeEnv:    []corev1.EnvVar{{Name: "CALICO_CNI_SERVICE_ACCOUNT", Value: "other"}},
			accounts:   []corev1.ServiceAccount{sa("calico-cni-plugin")},
			podAccount: "canal",
			want:       "canal", wantFrom: AccountFromInstallCNIEnv,
		},
		{
			name:       "calico-node's env next; an empty value counts as unset, as for Calico",
			installEnv: []corev1.EnvVar{{Name: "CALICO_CNI_SERVICE_ACCOUNT", Value: ""}},
			nodeEnv:    []corev1.EnvVar{{Name: "CALICO_CNI_SERVICE_ACCOUNT", Value: "cni-token"}},
			accounts:   []corev1.ServiceAccount{sa("calico-cni-plugin")},
			want:       "cni-token", wantFrom: AccountFromCalicoNodeEnv,
		},
		{
			name:     "calico-cni-plugin when it exists in the DaemonSet's namespace",
			accounts: []corev1.ServiceAccount{sa("calico-cni-plugin")},
			want:     "calico-cni-plugin", wantFrom: AccountCNIPluginExists,
		},
		{
			name:     "else the pod's account",
			accounts: []corev1.ServiceAccount{sa("calico-node")},
			want:     "calico-node", wantFrom: AccountFromPodSpec,
		},
		{
			name:       "the deprecated serviceAccount field, as the API server reads it",
			podAccount: "-", deprecated: "old-style",
			want: "old-style", wantFrom: AccountFromPodSpec,
		},
		{
			name:       "no account at all: default, as admission sets it",
			podAccount: "-",
			want:       "default", wantFrom: AccountFromPodSpec,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := testDaemonSet(corev1.Container{Env: append([]corev1.EnvVar{withTemplate}, c.installEnv...)}, corev1.Container{Env: c.nodeEnv})
			spec := &ds.Spec.Template.Spec
			switch c.podAccount {
			case "":
			case "-":
				spec.ServiceAccountName = ""
			default:
				spec.ServiceAccountName = c.podAccount
			}
			spec.DeprecatedServiceAccount = c.deprecated //nolint:staticcheck // the case under test
			lk := &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig}, ServiceAccounts: c.accounts}
			got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, lk)
			if err != nil {
				t.Fatal(err)
			}
			if got.CNIServiceAccount != c.want || got.CNIServiceAccountFrom != c.wantFrom {
				t.Errorf("account %q from %q, want %q from %q", got.CNIServiceAccount, got.CNIServiceAccountFrom, c.want, c.wantFrom)
			}
		})
	}
}

func TestResolveNetDirHostPath(t *testing.T) {
	hostPath := func(name, path string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
	}
	cases := []struct {
		name    string
		mounts  []corev1.VolumeMount
		volumes []corev1.Volume
		env     []corev1.EnvVar
		want    string
		wantErr string
	}{
		{
			name:    "Calico's mount",
			mounts:  []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d"}},
			volumes: []corev1.Volume{hostPath("cni-net-dir", "/etc/cni/net.d")},
			want:    "/etc/cni/net.d",
		},
		{
			name:    "another host directory (k3s)",
			mounts:  []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d/"}},
			volumes: []corev1.Volume{hostPath("cni-net-dir", "/var/lib/rancher/k3s/agent/etc/cni/net.d")},
			want:    "/var/lib/rancher/k3s/agent/etc/cni/net.d",
		},
		{
			name:    "CNI_NET_DIR names the directory in the template, not where install-cni writes",
			mounts:  []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d"}},
			volumes: []corev1.Volume{hostPath("cni-net-dir", "/etc/kubernetes/cni/net.d")},
			env:     []corev1.EnvVar{{Name: "CNI_NET_DIR", Value: "/etc/kubernetes/cni/net.d"}},
			want:    "/etc/kubernetes/cni/net.d",
		},
		{
			name: "the deepest mount holding the directory, with its subPath",
			mounts: []corev1.VolumeMount{
				{Name: "host", MountPath: "/host"},
				{Name: "etc", MountPath: "/host/etc", SubPath: "node-etc"},
			},
			volumes: []corev1.Volume{hostPath("host", "/"), hostPath("etc", "/srv")},
			want:    "/srv/node-etc/cni/net.d",
		},
		{
			name:    "subPathExpr expanded with the container's env",
			mounts:  []corev1.VolumeMount{{Name: "nodes", MountPath: "/host/etc/cni/net.d", SubPathExpr: "$(KUBERNETES_NODE_NAME)/net.d"}},
			volumes: []corev1.Volume{hostPath("nodes", "/shared")},
			env:     []corev1.EnvVar{{Name: "KUBERNETES_NODE_NAME", ValueFrom: field("spec.nodeName")}},
			want:    "/shared/node-1/net.d",
		},
		{
			name:    "subPathExpr with an unset variable",
			mounts:  []corev1.VolumeMount{{Name: "nodes", MountPath: "/host/etc/cni/net.d", SubPathExpr: "$(NOPE)"}},
			volumes: []corev1.Volume{hostPath("nodes", "/shared")},
			wantErr: "NOPE",
		},
		{
			name:    "a parent directory mounted; a sibling with a longer name is not a parent",
			mounts:  []corev1.VolumeMount{{Name: "cni-net-dir", MountPath: "/host/etc/cni"}, {Name: "x", MountPath: "/host/etc/cni/net.d2"}},
			volumes: []corev1.Volume{hostPath("cni-net-dir", "/etc/cni")},
			want:    "/etc/cni/net.d",
		},
		{
			name:    "no mount at all",
			mounts:  []corev1.VolumeMount{{Name: "x", MountPath: "/host/etc/cni/net.d2"}},
			wantErr: "nothing is mounted at /host/etc/cni/net.d",
		},
		{
			name:    "not a hostPath",
			mounts:  []corev1.VolumeMount{{Name: "scratch", MountPath: "/host/etc/cni/net.d"}},
			volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			wantErr: "volume scratch",
		},
		{
			name:    "a volume missing from the pod spec",
			mounts:  []corev1.VolumeMount{{Name: "ghost", MountPath: "/host/etc/cni/net.d"}},
			wantErr: "volume ghost",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := testDaemonSet(corev1.Container{Env: append([]corev1.EnvVar{withTemplate}, c.env...), VolumeMounts: c.mounts}, corev1.Container{})
			ds.Spec.Template.Spec.Volumes = c.volumes
			got, err := Resolve(Request{DaemonSet: ds, NodeName: "node-1"}, &Manifest{ConfigMaps: []corev1.ConfigMap{calicoConfig}})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.CNINetDirHostPath != c.want {
				t.Errorf("CNINetDirHostPath = %q, want %q", got.CNINetDirHostPath, c.want)
			}
		})
	}
}
