package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// installCNIKubeconfig is __KUBECONFIG_FILEPATH__ as install-cni renders it
// with CNI_NET_DIR /etc/cni/net.d (the operator's literal, and install-cni's
// default): the path on the host, whatever directory the agent writes.
const installCNIKubeconfig = "/etc/cni/net.d/calico-kubeconfig"

// TestDiscoveryOperatorInstallNoFlags: on a tigera operator install, the
// agent with no input flag at all (as the shipped DaemonSet runs it) finds
// calico-system/calico-node, renders cni-config's template with install-cni's
// environment from that DaemonSet, takes a bound token for calico-cni-plugin
// and leaves the token to calico-node (policy guard).
func TestDiscoveryOperatorInstallNoFlags(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net))
	// The kubeconfig is rendered with the DaemonSet's literal cluster
	// address (10.96.0.1), which is what this test checks and what must
	// never be dialled here: no credential probe in this test.
	noProbe := "--credential-probe=false"
	if code, out := e.runNode(e.nodeArgs("--once", noProbe)...); code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}

	// The conf: cni-config's config with only __KUBECONFIG_FILEPATH__
	// replaced, as install-cni does (it does not re-marshal).
	cm, err := e.client.CoreV1().ConfigMaps("calico-system").Get(e.ctx, "cni-config", metav1.GetOptions{})
	must(t, err)
	want := strings.ReplaceAll(cm.Data["config"], "__KUBECONFIG_FILEPATH__", installCNIKubeconfig)
	conf := e.read("10-calico.conflist")
	var got struct {
		Plugins []struct {
			MTU        *int `json:"mtu"`
			Kubernetes struct {
				Kubeconfig string `json:"kubeconfig"`
				APIRoot    string `json:"k8s_api_root"`
			} `json:"kubernetes"`
		} `json:"plugins"`
	}
	must(t, json.Unmarshal([]byte(conf), &got))
	if len(got.Plugins) == 0 || got.Plugins[0].Kubernetes.Kubeconfig != installCNIKubeconfig ||
		got.Plugins[0].MTU == nil || *got.Plugins[0].MTU != 0 || got.Plugins[0].Kubernetes.APIRoot != "https://10.96.0.1:443" {
		t.Errorf("10-calico.conflist: kubeconfig, mtu or k8s_api_root is not the operator's: %+v", got.Plugins)
	}
	if conf != want {
		t.Errorf("10-calico.conflist is not what install-cni renders from cni-config:\n got %q\nwant %q", conf, want)
	}

	// The kubeconfig: the server from install-cni's literal env (never the
	// agent's own), the agent's CA, a token calico-node's plugin account
	// owns, in calico-node's layout.
	ds := e.daemonSet("calico-system", "calico-node")
	spec := &ds.Spec.Template.Spec
	server := "https://" + net.JoinHostPort(installCNIEnv(t, spec, "KUBERNETES_SERVICE_HOST"), installCNIEnv(t, spec, "KUBERNETES_SERVICE_PORT"))
	gotServer, ca, tok, err := e.kubeconfigOnDisk()
	must(t, err)
	if gotServer != server || server != "https://10.96.0.1:443" || string(ca) != string(cp.CAData()) {
		t.Errorf("calico-kubeconfig: server %q (want %q from the DaemonSet), CA equal to the API server's: %t", gotServer, server, string(ca) == string(cp.CAData()))
	}
	if disk := e.read("calico-kubeconfig"); disk != string(tokenWatchKubeconfig(e, server, cp.CAData(), tok)) {
		t.Error("calico-kubeconfig is not in calico-node's layout")
	}
	if who, err := e.whoIsToken(tok); err != nil || who != saSubject("calico-system", "calico-cni-plugin") {
		t.Fatalf("the token written is %q (%v), want calico-cni-plugin's", who, err)
	}

	code, rep := e.driftJSON(noProbe)
	if code != 0 {
		t.Fatalf("drift after --once: exit %d: %+v", code, rep)
	}
	src := rep.Source
	if src == nil || src.Kind != "daemonset" || src.DaemonSet != "calico-system/calico-node" || src.Container != "install-cni" ||
		src.Pod != "" || !slices.Contains(src.ConfigMaps, "calico-system/cni-config") {
		t.Errorf("drift source: %+v", src)
	}
	tk := rep.Token
	if tk.Policy != "guard" || tk.ManagedBy != "calico-node" || tk.ServiceAccount != "calico-system/calico-cni-plugin" ||
		tk.Source != "tokenrequest" || tk.Accepted == nil || !*tk.Accepted {
		t.Errorf("drift token: %+v", tk)
	}

	// A hand edit on an operator install: the lasting change is made in
	// the Installation, not in cni-config (the operator rewrites it).
	must(t, os.WriteFile(filepath.Join(e.net, "10-calico.conflist"), []byte(strings.Replace(conf, `"mtu":0,`, `"mtu":1400,`, 1)), 0o600))
	code, out := e.runNode(e.nodeArgs("drift", noProbe)...)
	if code != 1 || !strings.Contains(out, "Drifted") || !strings.Contains(out, "Installation resource") {
		t.Fatalf("drift after a hand edit: exit %d\n%s", code, out)
	}
}

// TestDiscoveryManifestPodWinsOverTemplate: on a manifest install
// (kube-system/calico-node, found with no input flag) install-cni's env is
// this node's pod's, not the DaemonSet template's: a template change reaches
// the node only with the pod that carries it, as in a rolling update. With
// no pod the template as it is now is used, and a ConfigMap it refers to is
// followed without a restart. Each render is compared byte for byte with
// install-cni's.
func TestDiscoveryManifestPodWinsOverTemplate(t *testing.T) {
	e := newInstallEnv(t, "kube-system")
	e.requireNoDaemonSet("calico-system", "calico-node")
	e.applyInstall("manifest-v3.32.yaml", cniHostPath(t, e.net), func(u *unstructured.Unstructured) bool {
		if u.GetKind() == "ConfigMap" && u.GetName() == "calico-config" {
			must(t, unstructured.SetNestedField(u.Object, "1410", "data", "veth_mtu"))
		}
		return true
	})
	ds := e.daemonSet("kube-system", "calico-node")
	// A pod made from a template whose install-cni had a literal CNI_MTU.
	p1 := e.createNodePod(ds, func(s *corev1.PodSpec) {
		setInstallCNIEnv(t, s, corev1.EnvVar{Name: "CNI_MTU", Value: "1440"})
	})
	e.startNodeAgent()
	render := func(mtu string) string {
		cm, err := e.client.CoreV1().ConfigMaps("kube-system").Get(e.ctx, "calico-config", metav1.GetOptions{})
		must(t, err)
		return strings.NewReplacer("__KUBERNETES_NODE_NAME__", e.node, "__CNI_MTU__", mtu,
			"__KUBECONFIG_FILEPATH__", installCNIKubeconfig).Replace(cm.Data["cni_network_config"])
	}
	e.waitContent("10-calico.conflist", "the pod's CNI_MTU 1440", render("1440"))
	e.waitStatus("inputs from "+p1.Name, func(r nodeReport) error {
		if s := r.Source; s == nil || s.Pod != p1.Name || s.DaemonSet != "kube-system/calico-node" || s.Container != "install-cni" ||
			!slices.Contains(s.ConfigMaps, "kube-system/calico-config") {
			return fmt.Errorf("source %+v", r.Source)
		}
		if r.Token.Policy != "guard" || r.Token.ServiceAccount != "kube-system/calico-cni-plugin" {
			return fmt.Errorf("token %+v", r.Token)
		}
		return nil
	})

	// The DaemonSet gets a new template; the pod is touched (so the agent
	// reads the DaemonSet again) and calico-config's template changes (so
	// there is a render to wait for). The node keeps the pod's MTU.
	ds = e.daemonSet("kube-system", "calico-node")
	setInstallCNIEnv(t, &ds.Spec.Template.Spec, corev1.EnvVar{Name: "CNI_MTU", Value: "1300"})
	_, err := e.client.AppsV1().DaemonSets("kube-system").Update(e.ctx, ds, metav1.UpdateOptions{})
	must(t, err)
	_, err = e.client.CoreV1().Pods("kube-system").Patch(e.ctx, p1.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"e2e/touched":"1"}}}`), metav1.PatchOptions{})
	must(t, err)
	e.editConfigMap("cni_network_config", `"log_level": "info"`, `"log_level": "debug"`)
	e.waitContent("10-calico.conflist", "the new ConfigMap template with the pod's MTU", render("1440"))
	if code, rep := e.driftJSON(); code != 0 || rep.Source == nil || rep.Source.Pod != p1.Name {
		t.Fatalf("drift with the old pod and a new template: exit %d, source %+v", code, rep.Source)
	}

	// The rolling update replaces the pod: the new template arrives with it.
	must(t, e.client.CoreV1().Pods("kube-system").Delete(e.ctx, p1.Name, metav1.DeleteOptions{}))
	p2 := e.createNodePod(e.daemonSet("kube-system", "calico-node"), nil)
	e.waitContent("10-calico.conflist", "the new pod's CNI_MTU 1300", render("1300"))
	e.waitStatus("inputs from "+p2.Name, func(r nodeReport) error {
		if r.Source == nil || r.Source.Pod != p2.Name {
			return fmt.Errorf("source %+v", r.Source)
		}
		return nil
	})

	// The template goes back to veth_mtu while the pod still runs; then no
	// pod runs here: the template is what a new pod would get.
	ds = e.daemonSet("kube-system", "calico-node")
	setInstallCNIEnv(t, &ds.Spec.Template.Spec, corev1.EnvVar{Name: "CNI_MTU", ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "calico-config"}, Key: "veth_mtu"}}})
	_, err = e.client.AppsV1().DaemonSets("kube-system").Update(e.ctx, ds, metav1.UpdateOptions{})
	must(t, err)
	must(t, e.client.CoreV1().Pods("kube-system").Delete(e.ctx, p2.Name, metav1.DeleteOptions{}))
	e.waitContent("10-calico.conflist", "the template's veth_mtu 1410", render("1410"))
	e.waitStatus("inputs from the template", func(r nodeReport) error {
		if r.Source == nil || r.Source.Pod != "" || r.Source.DaemonSet != "kube-system/calico-node" {
			return fmt.Errorf("source %+v", r.Source)
		}
		return nil
	})

	// calico-config changes: the node follows without a restart.
	e.editConfigMap("veth_mtu", "1410", "1420")
	e.waitContent("10-calico.conflist", "the new veth_mtu 1420", render("1420"))

	// Still no pod: each pass renders the template as it is now (a DaemonSet
	// read once and kept would give the veth_mtu of the first one). The
	// DaemonSet is not watched (its status churns with every pod in the
	// cluster); the ConfigMap change is what makes the pass here.
	ds = e.daemonSet("kube-system", "calico-node")
	setInstallCNIEnv(t, &ds.Spec.Template.Spec, corev1.EnvVar{Name: "CNI_MTU", Value: "1380"})
	_, err = e.client.AppsV1().DaemonSets("kube-system").Update(e.ctx, ds, metav1.UpdateOptions{})
	must(t, err)
	e.editConfigMap("veth_mtu", "1420", "1430")
	e.waitContent("10-calico.conflist", "the current template's CNI_MTU 1380", render("1380"))
}

// TestDiscoverySeedEraV26: the seed's Calico v2.6 manifest (API versions
// brought up to date) discovered with no input flag: the template embeds
// the token, so the token comes from calico-node's legacy token Secret and
// the agent owns it; a Secret deleted and regenerated under a new name is
// followed, again and again (the seed's story).
func TestDiscoverySeedEraV26(t *testing.T) {
	e := newInstallEnv(t, "kube-system")
	e.requireNoDaemonSet("calico-system", "calico-node")
	e.applyInstall("manifest-v2.6.yaml", harness.ServedAPIs, cniHostPath(t, e.net))
	n := seq.Add(1)
	secret := func(i int) string {
		name := fmt.Sprintf("calico-node-token-e2e%d-%d", n, i)
		t.Cleanup(func() {
			_ = cp.Client.CoreV1().Secrets("kube-system").Delete(context.Background(), name, metav1.DeleteOptions{})
		})
		return e.populatedTokenSecret(name)
	}
	e.secret = secret(0)
	e.startNodeAgent()
	tok := e.secretToken(e.secret)
	e.waitFile(e.net, "10-calico.conf", "the Secret's token", func(s string) bool { return strings.Contains(s, tok) })
	var conf struct {
		EtcdEndpoints string `json:"etcd_endpoints"`
		Policy        struct {
			APIRoot string `json:"k8s_api_root"`
			Token   string `json:"k8s_auth_token"`
		} `json:"policy"`
		Kubernetes struct {
			Kubeconfig string `json:"kubeconfig"`
		} `json:"kubernetes"`
	}
	must(t, json.Unmarshal([]byte(e.read("10-calico.conf")), &conf))
	if conf.EtcdEndpoints != "http://127.0.0.1:2379" || conf.Policy.APIRoot != "https://"+cp.Host() ||
		conf.Policy.Token != tok || conf.Kubernetes.Kubeconfig != installCNIKubeconfig {
		t.Errorf("10-calico.conf: etcd %q, api root %q (want https://%s), token from the Secret %t, kubeconfig %q",
			conf.EtcdEndpoints, conf.Policy.APIRoot, cp.Host(), conf.Policy.Token == tok, conf.Kubernetes.Kubeconfig)
	}
	e.waitStatus("a seed-era install", func(r nodeReport) error {
		if s := r.Source; s == nil || s.Kind != "daemonset" || s.DaemonSet != "kube-system/calico-node" || s.Container != "install-cni" || s.Pod != "" {
			return fmt.Errorf("source %+v", r.Source)
		}
		if tk := r.Token; tk.Source != "secret" || tk.Secret != e.secret || tk.Policy != "own" ||
			tk.ManagedBy != "calico-cni-sync" || tk.ServiceAccount != "kube-system/calico-node" {
			return fmt.Errorf("token %+v", r.Token)
		}
		return nil
	})

	for i := 1; i <= 2; i++ {
		old, oldTok := e.secret, tok
		must(t, e.client.CoreV1().Secrets("kube-system").Delete(e.ctx, old, metav1.DeleteOptions{}))
		e.secret = secret(i)
		tok = e.secretToken(e.secret)
		e.waitFile(e.net, "10-calico.conf", "the token of "+e.secret, func(s string) bool {
			return strings.Contains(s, tok) && !strings.Contains(s, oldTok)
		})
		e.waitFile(e.net, "calico-kubeconfig", "the token of "+e.secret, func(s string) bool { return strings.Contains(s, tok) })
		if who, err := e.whoIsToken(tok); err != nil || who != saSubject("kube-system", "calico-node") {
			t.Fatalf("regeneration %d: the token on disk is %q (%v)", i, who, err)
		}
		e.waitEvent(e.node, "TokenRotated", "Secret "+e.secret)
	}
}
