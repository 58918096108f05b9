package installcni

import (
	"errors"
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Lookup is what resolution may read besides the pod spec. A lookup of an
// object that does not exist returns (nil, nil) or (false, nil); an error is
// a read that failed (a 403 included) and fails the resolution.
type Lookup interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	ServiceAccountExists(namespace, name string) (bool, error)
}

// Request names the DaemonSet and the node to resolve for.
type Request struct {
	// DaemonSet is calico-node's (or canal's) DaemonSet.
	DaemonSet *appsv1.DaemonSet
	// Pod is this node's pod of the DaemonSet, found by the caller with the
	// DaemonSet's selector and spec.nodeName. Nil: no pod runs here yet, and
	// the DaemonSet's pod template is what a new pod would get.
	Pod *corev1.Pod
	// NodeName is this node: the value of fieldRef spec.nodeName.
	NodeName string
	// TemplateGiven: the caller replaces the template with its own (the
	// agent's --cni-network-config-file), as install-cni's
	// CNI_NETWORK_CONFIG_FILE does; a CNI_NETWORK_CONFIG_FILE in the
	// container, a file the agent cannot read, is then no error.
	TemplateGiven bool
	// AgentEnv looks up the agent's own environment. The agent is a pod of the
	// same cluster, so its KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT
	// are what the kubelet injects into install-cni too. Nil: none.
	AgentEnv func(name string) (string, bool)
}

// AccountSource says which rule of the contract chose the CNI service account.
type AccountSource string

// The rules, in the contract's order.
const (
	AccountFromInstallCNIEnv AccountSource = "install-cni env CALICO_CNI_SERVICE_ACCOUNT"
	AccountFromCalicoNodeEnv AccountSource = "calico-node env CALICO_CNI_SERVICE_ACCOUNT"
	AccountCNIPluginExists   AccountSource = "ServiceAccount calico-cni-plugin exists"
	AccountFromPodSpec       AccountSource = "pod serviceAccountName"
)

// Resolved is install-cni's environment and the facts around it, as a
// restart of this node's calico-node pod would see them now.
type Resolved struct {
	// DaemonSet is namespace/name.
	DaemonSet string
	// Pod is the name of the pod whose spec was used, "" for the template.
	Pod string
	// Container is the install-cni container's name.
	Container string
	// Env is install-cni's environment as the kubelet gives it: envFrom, env,
	// and the kubelet-injected KUBERNETES_SERVICE_HOST/PORT.
	Env map[string]string
	// Template is Env["CNI_NETWORK_CONFIG"], "" when unset (install-cni would
	// fall back to its built-in template; the agent never does).
	Template string
	// ConfigMaps lists the ConfigMaps read and found, as namespace/name,
	// sorted; AbsentConfigMaps those looked up but absent (optional
	// references): creating one changes the environment, so watch both.
	ConfigMaps       []string
	AbsentConfigMaps []string
	// ConfigMapMeta is the metadata of the ConfigMaps found, in the order
	// of ConfigMaps: when each was last updated, and its annotations.
	ConfigMapMeta []metav1.ObjectMeta
	// ManageCNI is true when the calico-node container's CALICO_MANAGE_CNI
	// is not "false", the test calico-node v3.23+ makes before it starts its
	// CNI token watcher. Older calico-node has no watcher whatever this says:
	// the caller also checks that the token lives in the kubeconfig.
	ManageCNI bool
	// CNIServiceAccount is the account the CNI token is for, and
	// CNIServiceAccountFrom the rule that chose it.
	CNIServiceAccount     string
	CNIServiceAccountFrom AccountSource
	// CNINetDirHostPath is the host directory install-cni writes into (its
	// mount of /host/etc/cni/net.d), to compare with the agent's own.
	CNINetDirHostPath string
	// Origins says where each variable of Env is set: the place a lasting
	// change of its value must be made.
	Origins map[string]Origin
}

const (
	installCNIName       = "install-cni"
	calicoNodeName       = "calico-node"
	cniPluginAccount     = "calico-cni-plugin"
	envNetworkConfig     = "CNI_NETWORK_CONFIG"
	envNetworkConfigFile = "CNI_NETWORK_CONFIG_FILE"
	envServiceAccount    = "CALICO_CNI_SERVICE_ACCOUNT"
	envManageCNI         = "CALICO_MANAGE_CNI"
	// installCNINetDir is where every install-cni release writes, whatever
	// its CNI_NET_DIR (which only names the directory inside the template).
	installCNINetDir = "/host/etc/cni/net.d"
)

// Candidates are the DaemonSets looked for when none is named, in the
// contract's order: the tigera operator's, the manifest and Helm installs',
// and canal's.
func Candidates() []types.NamespacedName {
	return []types.NamespacedName{
		{Namespace: "calico-system", Name: "calico-node"},
		{Namespace: "kube-system", Name: "calico-node"},
		{Namespace: "kube-system", Name: "canal"},
	}
}

// Resolve computes install-cni's environment for req's node, reading the
// ConfigMaps and the ServiceAccount it needs through lk. Whatever the kubelet
// would refuse to start the container with (a missing required ConfigMap or
// key), and whatever the agent cannot see (a Secret, a fieldRef other than
// the contract's, CNI_NETWORK_CONFIG_FILE, a CNI directory that is no
// hostPath), is an error naming the DaemonSet, the container and the
// variable; the caller reports it and keeps the files as they are.
func Resolve(req Request, lk Lookup) (*Resolved, error) {
	ds := req.DaemonSet
	if ds == nil {
		return nil, errors.New("resolve install-cni: no DaemonSet")
	}
	dsName := ds.Namespace + "/" + ds.Name
	spec, podName := &ds.Spec.Template.Spec, ""
	nodeName := req.NodeName
	if req.Pod != nil {
		if req.Pod.Namespace != "" && req.Pod.Namespace != ds.Namespace {
			return nil, fmt.Errorf("resolve DaemonSet %s: pod %s/%s is in another namespace", dsName, req.Pod.Namespace, req.Pod.Name)
		}
		spec, podName = &req.Pod.Spec, req.Pod.Name
		if nodeName == "" {
			nodeName = req.Pod.Spec.NodeName
		}
	}
	where := "DaemonSet " + dsName
	if podName != "" {
		where += " (pod " + podName + ")"
	}

	install := installCNIContainer(spec)
	if install == nil {
		return nil, fmt.Errorf("resolve %s: no install-cni container (none named %s, none whose env sets %s): is this Calico's DaemonSet?",
			where, installCNIName, envNetworkConfig)
	}
	rs := &resolution{
		lookup:         lk,
		namespace:      ds.Namespace,
		nodeName:       nodeName,
		serviceAccount: podServiceAccount(spec),
		serviceEnv:     serviceEnv(req.AgentEnv),
		configMaps:     map[string]*corev1.ConfigMap{},
	}
	env, err := rs.containerEnv(install, nil)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: container %s: %w", where, install.Name, err)
	}
	if _, ok := env[envNetworkConfigFile]; ok && !req.TemplateGiven {
		return nil, fmt.Errorf("resolve %s: container %s sets %s: the template is a file inside the container, which the agent cannot read; give the agent that template with --cni-network-config-file",
			where, install.Name, envNetworkConfigFile)
	}
	hostPath, err := netDirHostPath(spec, install, env)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: container %s: %w", where, install.Name, err)
	}

	var nodeEnv map[string]string
	if node := container(spec.Containers, calicoNodeName); node != nil {
		nodeEnv, err = rs.containerEnv(node, []string{envManageCNI, envServiceAccount})
		if err != nil {
			return nil, fmt.Errorf("resolve %s: container %s: %w", where, node.Name, err)
		}
	}
	account, from, err := rs.cniServiceAccount(env, nodeEnv)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", where, err)
	}
	found, absent := rs.configMapsRead()
	return &Resolved{
		DaemonSet:             dsName,
		Pod:                   podName,
		Container:             install.Name,
		Env:                   env,
		Template:              env[envNetworkConfig],
		ConfigMaps:            found,
		AbsentConfigMaps:      absent,
		ConfigMapMeta:         rs.configMapMeta(),
		ManageCNI:             nodeEnv != nil && nodeEnv[envManageCNI] != "false",
		CNIServiceAccount:     account,
		CNIServiceAccountFrom: from,
		CNINetDirHostPath:     hostPath,
		Origins:               rs.origins(install),
	}, nil
}

// installCNIContainer is the container named install-cni, an init container
// since Calico v3.0 and a regular one before; else the first whose env sets
// CNI_NETWORK_CONFIG.
func installCNIContainer(spec *corev1.PodSpec) *corev1.Container {
	if c := container(spec.InitContainers, installCNIName); c != nil {
		return c
	}
	if c := container(spec.Containers, installCNIName); c != nil {
		return c
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			for _, e := range list[i].Env {
				if e.Name == envNetworkConfig {
					return &list[i]
				}
			}
		}
	}
	return nil
}

func container(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// podServiceAccount is the pod's service account as the API server sets it:
// serviceAccountName, else the deprecated serviceAccount, else "default"
// (the ServiceAccount admission plugin).
func podServiceAccount(spec *corev1.PodSpec) string {
	switch {
	case spec.ServiceAccountName != "":
		return spec.ServiceAccountName
	case spec.DeprecatedServiceAccount != "": //nolint:staticcheck // the API server still honours it
		return spec.DeprecatedServiceAccount //nolint:staticcheck // as above
	default:
		return "default"
	}
}

// serviceEnv is the part of the kubelet's service variables the contract
// takes from the agent's environment.
func serviceEnv(agentEnv func(string) (string, bool)) map[string]string {
	env := map[string]string{}
	if agentEnv == nil {
		return env
	}
	for _, name := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"} {
		if v, ok := agentEnv(name); ok {
			env[name] = v
		}
	}
	return env
}

// cniServiceAccount applies the contract's rules in order. Calico reads
// CALICO_CNI_SERVICE_ACCOUNT only when it is not empty.
func (rs *resolution) cniServiceAccount(installEnv, nodeEnv map[string]string) (string, AccountSource, error) {
	if v := installEnv[envServiceAccount]; v != "" {
		return v, AccountFromInstallCNIEnv, nil
	}
	if v := nodeEnv[envServiceAccount]; v != "" {
		return v, AccountFromCalicoNodeEnv, nil
	}
	exists, err := rs.lookup.ServiceAccountExists(rs.namespace, cniPluginAccount)
	if err != nil {
		return "", "", fmt.Errorf("get ServiceAccount %s/%s: %w", rs.namespace, cniPluginAccount, err)
	}
	if exists {
		return cniPluginAccount, AccountCNIPluginExists, nil
	}
	return rs.serviceAccount, AccountFromPodSpec, nil
}

// netDirHostPath is the host directory behind install-cni's
// /host/etc/cni/net.d: the hostPath volume of the deepest mount that holds
// it, with the mount's subPath and the rest of the path appended.
func netDirHostPath(spec *corev1.PodSpec, c *corev1.Container, env map[string]string) (string, error) {
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		mp := path.Clean("/" + m.MountPath)
		if mp != installCNINetDir && !strings.HasPrefix(installCNINetDir, strings.TrimSuffix(mp, "/")+"/") {
			continue
		}
		if mount == nil || len(mp) > len(path.Clean("/"+mount.MountPath)) {
			mount = m
		}
	}
	if mount == nil {
		return "", fmt.Errorf("nothing is mounted at %s, where install-cni writes", installCNINetDir)
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == mount.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil {
		return "", fmt.Errorf("volume %s mounted at %s is not in the pod spec", mount.Name, mount.MountPath)
	}
	if vol.HostPath == nil {
		return "", fmt.Errorf("volume %s mounted at %s is not a hostPath, so install-cni writes nothing on the node", vol.Name, mount.MountPath)
	}
	subPath := mount.SubPath
	if mount.SubPathExpr != "" {
		var missing []string
		subPath = expandVars(mount.SubPathExpr, func(name string) (string, bool) {
			v := env[name]
			if v == "" {
				missing = append(missing, name)
			}
			return v, true
		})
		if len(missing) > 0 {
			return "", fmt.Errorf("volume mount %s: subPathExpr %q refers to unset %s", mount.Name, mount.SubPathExpr, strings.Join(missing, ", "))
		}
	}
	rest := strings.TrimPrefix(installCNINetDir, path.Clean("/"+mount.MountPath))
	return path.Join("/", vol.HostPath.Path, subPath, rest), nil
}
