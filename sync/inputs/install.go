package inputs

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// Input sources (--source).
const (
	SourceAuto      = "auto"
	SourceDaemonSet = "daemonset"
	SourceConfigMap = "configmap"
)

// Install is what install-cni would get if calico-node restarted now: the
// template, the environment it renders with, and where both came from.
type Install struct {
	Template string
	// Env is install-cni's environment (source daemonset) or the agent's
	// own (source configmap).
	Env func(string) (string, bool)
	// VethMTU and EtcdEndpoints are calico-config's keys, used when CNI_MTU
	// and ETCD_ENDPOINTS are unset (source configmap).
	VethMTU, EtcdEndpoints string
	// KubeconfigDir is install-cni's CNI_NET_DIR, the directory named in
	// __KUBECONFIG_FILEPATH__ (source daemonset); "" is the agent's own.
	KubeconfigDir string
	// HostPath is the DaemonSet's host directory for CNI configs, to be
	// checked against the directory the agent writes.
	HostPath string
	// CNIServiceAccount is the account whose token the CNI plugin uses,
	// in Namespace.
	CNIServiceAccount string
	Namespace         string
	// ManageCNI: calico-node refreshes the CNI token itself (its
	// CALICO_MANAGE_CNI is not "false").
	ManageCNI bool
	Source    SourceInfo
	// Origins says where install-cni's variables are set (CNI_NETWORK_CONFIG
	// is the template): where a lasting change of a value must be made.
	// A variable with no entry is set where the agent cannot say.
	Origins map[string]installcni.Origin
	// ConfigMapMeta is the metadata of the ConfigMaps read (when each was
	// last updated, its annotations): the rollout of a change they carry.
	ConfigMapMeta []metav1.ObjectMeta
}

// SourceInfo says where the inputs came from, as reports show it.
type SourceInfo struct {
	Kind       string   `json:"kind"`
	DaemonSet  string   `json:"daemonset,omitempty"`
	Container  string   `json:"container,omitempty"`
	Pod        string   `json:"pod"`
	ConfigMaps []string `json:"configMaps"`
	File       string   `json:"file,omitempty"`
	// Install is the install kind, which says where a lasting change is
	// made.
	Install Kind `json:"-"`
}

// InstallSource gives the current inputs.
type InstallSource func(ctx context.Context) (*Install, error)

// InstallFromConfigMap is source configmap: the template from key of the
// ConfigMap (or templateFile), the rest from the agent's environment. The
// CNI service account is calico-cni-plugin when accounts says it exists in
// the ConfigMap's namespace (Calico v3.26+), else calico-node; with no
// accounts (offline) it is left to the token's own subject.
func InstallFromConfigMap(cm ConfigMapSource, key, templateFile string, env func(string) (string, bool), accounts installcni.Lookup, info SourceInfo) InstallSource {
	return func(ctx context.Context) (*Install, error) {
		c, err := cm(ctx)
		if err != nil {
			return nil, err
		}
		template := c.Data[key]
		if templateFile != "" {
			data, err := os.ReadFile(templateFile)
			if err != nil {
				return nil, fmt.Errorf("read --cni-network-config-file: %w", err)
			}
			template = string(data)
		}
		if template == "" {
			return nil, fmt.Errorf("ConfigMap %s/%s has no %s key and no --cni-network-config-file was given", c.Namespace, c.Name, key)
		}
		ns := c.Namespace
		if ns == "" {
			ns = "kube-system"
		}
		in := &Install{Template: template, Env: env, VethMTU: c.Data[KeyVethMTU], EtcdEndpoints: c.Data[KeyEtcdEndpoints],
			Namespace: ns, ManageCNI: true, Source: info}
		in.Source.Install = KindSeedConfigMap
		in.Source.ConfigMaps = []string{}
		if c.Name != "" && in.Source.File == "" {
			in.Source.ConfigMaps = []string{ns + "/" + c.Name}
		}
		in.Origins = configMapOrigins(c, ns, key, templateFile == "", env)
		if c.Name != "" {
			in.ConfigMapMeta = []metav1.ObjectMeta{c.ObjectMeta}
		}
		if accounts != nil {
			in.CNIServiceAccount = "calico-node"
			if ok, err := accounts.ServiceAccountExists(ns, "calico-cni-plugin"); err != nil {
				return nil, err
			} else if ok {
				in.CNIServiceAccount = "calico-cni-plugin"
			}
		}
		return in, nil
	}
}

// Cluster is what source daemonset reads: the DaemonSet, this node's pod of
// it, and the objects its environment refers to. A missing object is nil
// (or false) with no error; an error is a read that failed, a 403 included.
type Cluster interface {
	installcni.Lookup
	DaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error)
	// NodePod is the pod of ds running on node, nil when there is none.
	NodePod(ctx context.Context, ds *appsv1.DaemonSet, node string) (*corev1.Pod, error)
	// Node is the Node, nil when it does not exist or cannot be known
	// (offline).
	Node(ctx context.Context, name string) (*corev1.Node, error)
}

// InstallFromDaemonSet is source daemonset: install-cni's environment as the
// kubelet would give it to this node's calico-node pod (else to a new pod of
// the DaemonSet's template), with the ConfigMaps it refers to as they are now.
// templateFile (--cni-network-config-file), when given, replaces just the
// template, read at each pass, as install-cni's CNI_NETWORK_CONFIG_FILE
// replaces CNI_NETWORK_CONFIG.
func InstallFromDaemonSet(c Cluster, named, node string, agentEnv func(string) (string, bool), file, templateFile string) InstallSource {
	return func(ctx context.Context) (*Install, error) {
		var template []byte
		if templateFile != "" {
			var err error
			if template, err = os.ReadFile(templateFile); err != nil {
				return nil, fmt.Errorf("read --cni-network-config-file: %w", err)
			}
			if len(template) == 0 {
				return nil, fmt.Errorf("--cni-network-config-file %s is empty", templateFile)
			}
		}
		ds, pod, err := FindDaemonSet(ctx, c, named, node)
		if err != nil {
			return nil, err
		}
		if ds == nil {
			return nil, fmt.Errorf("no calico-node DaemonSet found (looked for %s); name it with --calico-daemonset or use --source=configmap", CandidateList())
		}
		r, err := installcni.Resolve(installcni.Request{DaemonSet: ds, Pod: pod, NodeName: node, AgentEnv: agentEnv,
			TemplateGiven: templateFile != ""}, c)
		if err != nil {
			return nil, err
		}
		if templateFile != "" {
			// The agent's file is the template: no place in the cluster
			// holds a lasting change of it.
			r.Template = string(template)
			delete(r.Origins, "CNI_NETWORK_CONFIG")
		}
		where := "DaemonSet " + r.DaemonSet
		if r.Pod != "" {
			where = "pod " + ds.Namespace + "/" + r.Pod
		}
		if r.Template == "" {
			return nil, fmt.Errorf("%s: container %s has no CNI_NETWORK_CONFIG (install-cni would fall back to its built-in template; the agent never does): set it, or name the template with --cni-network-config-file", where, r.Container)
		}
		env := func(key string) (string, bool) {
			if v, ok := r.Env[key]; ok {
				return v, true
			}
			return agentEnv(key)
		}
		kubeconfigDir := r.Env["CNI_NET_DIR"]
		if kubeconfigDir == "" {
			kubeconfigDir = "/etc/cni/net.d"
		}
		account := r.CNIServiceAccount
		if m, ok := c.(ManifestCluster); ok && len(m.ServiceAccounts) == 0 &&
			r.CNIServiceAccountFrom != installcni.AccountFromInstallCNIEnv && r.CNIServiceAccountFrom != installcni.AccountFromCalicoNodeEnv {
			// A manifest with no ServiceAccounts (kubectl get ds cm -o
			// yaml) cannot say whether calico-cni-plugin exists: offline,
			// the token file's own subject names the account.
			account = ""
		}
		return &Install{
			Template: r.Template, Env: env, KubeconfigDir: kubeconfigDir, HostPath: r.CNINetDirHostPath,
			CNIServiceAccount: account, Namespace: ds.Namespace, ManageCNI: r.ManageCNI,
			Source: SourceInfo{Kind: SourceDaemonSet, DaemonSet: r.DaemonSet, Container: r.Container, Pod: r.Pod,
				ConfigMaps: nonNil(r.ConfigMaps), File: file, Install: KindOf(ds)},
			Origins: r.Origins, ConfigMapMeta: r.ConfigMapMeta,
		}, nil
	}
}

// configMapOrigins are the origins of source configmap: the template and,
// unless the agent's environment sets them, the MTU and the etcd endpoints
// come from calico-config's keys.
func configMapOrigins(c *corev1.ConfigMap, ns, key string, templateFromConfigMap bool, env func(string) (string, bool)) map[string]installcni.Origin {
	out := map[string]installcni.Origin{}
	if c.Name == "" {
		return out
	}
	at := func(k string) installcni.Origin {
		return installcni.Origin{Kind: installcni.OriginConfigMapKey, ConfigMap: ns + "/" + c.Name, Key: k}
	}
	if templateFromConfigMap {
		out["CNI_NETWORK_CONFIG"] = at(key)
	}
	for name, k := range map[string]string{"CNI_MTU": KeyVethMTU, "ETCD_ENDPOINTS": KeyEtcdEndpoints} {
		if env != nil {
			if _, set := env(name); set {
				continue
			}
		}
		if _, ok := c.Data[k]; ok {
			out[name] = at(k)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// PodOf picks, among pods on one node, the pod the DaemonSet controls (its
// controller reference), the newest when a rolling update leaves two for a
// moment. A pod being deleted is passed over for a live one, but taken when
// it is the only one: while the old calico-node terminates, the node still
// runs its CNI binaries, and the new template must not reach the node
// before the new pod does.
func PodOf(ds *appsv1.DaemonSet, pods []*corev1.Pod) *corev1.Pod {
	var live, dying *corev1.Pod
	newer := func(a, b *corev1.Pod) bool { return a == nil || a.CreationTimestamp.Before(&b.CreationTimestamp) }
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.Kind != "DaemonSet" || ref.Name != ds.Name || p.Namespace != ds.Namespace {
			continue
		}
		if ds.UID != "" && ref.UID != "" && ref.UID != ds.UID {
			continue
		}
		switch {
		case p.DeletionTimestamp == nil && newer(live, p):
			live = p
		case p.DeletionTimestamp != nil && newer(dying, p):
			dying = p
		}
	}
	if live != nil {
		return live
	}
	return dying
}

// ManifestCluster is source daemonset offline: the objects of
// --manifest-file. No pod runs in a manifest, so the template is used.
type ManifestCluster struct{ *installcni.Manifest }

// DaemonSet finds one in the manifest.
func (m ManifestCluster) DaemonSet(_ context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	return m.Manifest.DaemonSet(namespace, name), nil
}

// NodePod is always nil offline.
func (m ManifestCluster) NodePod(context.Context, *appsv1.DaemonSet, string) (*corev1.Pod, error) {
	return nil, nil
}

// Node is unknown offline.
func (m ManifestCluster) Node(context.Context, string) (*corev1.Node, error) {
	return nil, nil
}

// cachedAccounts remembers, for a while, whether a ServiceAccount exists:
// source configmap asks at every pass which account the CNI token is for,
// and a GET per pass would double the agent's requests for each change.
type cachedAccounts struct {
	installcni.Lookup
	ttl time.Duration

	mu sync.Mutex
	m  map[string]cachedAccount
}

type cachedAccount struct {
	exists bool
	at     time.Time
}

func newCachedAccounts(lk installcni.Lookup, ttl time.Duration) *cachedAccounts {
	return &cachedAccounts{Lookup: lk, ttl: ttl, m: map[string]cachedAccount{}}
}

// ServiceAccountExists answers from the cache when it is fresh enough.
func (c *cachedAccounts) ServiceAccountExists(namespace, name string) (bool, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && time.Since(e.at) < c.ttl {
		return e.exists, nil
	}
	exists, err := c.Lookup.ServiceAccountExists(namespace, name)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.m[key] = cachedAccount{exists: exists, at: time.Now()}
	c.mu.Unlock()
	return exists, nil
}
