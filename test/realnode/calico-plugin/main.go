// Command calico-plugin stands in for Calico's CNI plugin (`type: calico`)
// on the real-node tests' node, where the real one cannot be built. It
// authenticates exactly where Calico's does, and so fails exactly when
// Calico's would:
//
//   - the credentials are Calico's: the kubeconfig named by the conf's
//     kubernetes.kubeconfig, overridden by policy.k8s_api_root,
//     policy.k8s_auth_token and the other policy.k8s_* fields (the v2.x
//     conf), as the cni-plugin's newK8sClient merges them;
//   - the first request is Calico's first: a GET of
//     crd.projectcalico.org/v1 clusterinformations/default (Calico v3.x);
//   - a 401 or a 403 fails ADD with Calico's message, "error getting
//     ClusterInformation: connection is unauthorized: ..." (libcalico-go maps
//     both to ErrorConnectionUnauthorized), which the kubelet puts in its
//     FailedCreatePodSandBox event;
//   - a v2.x conf (policy.k8s_api_root set: the plugin of Calico v2.x, whose
//     datastore was etcd) reaches the API server first for the pod, whose
//     labels its k8s policy driver needs: the stand-in GETs the pod and fails
//     ADD with the API server's error, as that plugin did;
//   - the conf's mtu (veth_mtu, rendered as __CNI_MTU__) is held to the
//     underlay's: above CALICO_STANDIN_UNDERLAY_MTU, which the node harness
//     sets in the runtime's environment (1500, an Ethernet underlay), ADD
//     fails with "mtu 9001 is above the underlay's 1500". Calico's plugin
//     would set such an MTU on the veth and the pod would start, then lose
//     every packet larger than the underlay carries; the stand-in fails at
//     once instead, so a wrong MTU shows where the kubelet reports a broken
//     network, in its FailedCreatePodSandBox event. An mtu of 0 (or none)
//     is Calico's "detect it": it passes.
//
// Past those checks it does not program Calico's dataplane: it delegates the
// interface and the address to the reference `bridge` and `host-local`
// plugins, on the bridge and subnet the node harness gives it in its
// environment (CALICO_STANDIN_BRIDGE, CALICO_STANDIN_SUBNET,
// CALICO_STANDIN_IPAM_DIR). DEL delegates without the check, so that pods
// can always be torn down.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// netConf holds the fields of Calico's conf this stand-in reads.
type netConf struct {
	types.NetConf
	MTU        int `json:"mtu"`
	Kubernetes struct {
		Kubeconfig string `json:"kubeconfig"`
		K8sAPIRoot string `json:"k8s_api_root"`
	} `json:"kubernetes"`
	Policy struct {
		K8sAPIRoot              string `json:"k8s_api_root"`
		K8sAuthToken            string `json:"k8s_auth_token"`
		K8sClientCertificate    string `json:"k8s_client_certificate"`
		K8sClientKey            string `json:"k8s_client_key"`
		K8sCertificateAuthority string `json:"k8s_certificate_authority"`
	} `json:"policy"`
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: func(*skel.CmdArgs) error { return nil }},
		version.All, "calico-cni-sync's stand-in for Calico's CNI plugin")
}

func cmdAdd(args *skel.CmdArgs) error {
	var conf netConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return fmt.Errorf("failed to load netconf: %w", err)
	}
	if err := firstRequest(conf, args.Args); err != nil {
		return err
	}
	if err := underlayFits(conf.MTU, os.Getenv("CALICO_STANDIN_UNDERLAY_MTU")); err != nil {
		return err
	}
	delegate, err := bridgeConf(conf)
	if err != nil {
		return err
	}
	result, err := invoke.DelegateAdd(context.Background(), "bridge", delegate, nil)
	if err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	var conf netConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return fmt.Errorf("failed to load netconf: %w", err)
	}
	delegate, err := bridgeConf(conf)
	if err != nil {
		return err
	}
	return invoke.DelegateDel(context.Background(), "bridge", delegate, nil)
}

// firstRequest makes Calico's first request with Calico's credentials.
func firstRequest(conf netConf, cniArgs string) error {
	overrides := &clientcmd.ConfigOverrides{}
	apiRoot, _, _ := strings.Cut(conf.Policy.K8sAPIRoot, "/api/")
	for _, o := range []struct {
		field *string
		value string
	}{
		{&overrides.ClusterInfo.Server, apiRoot},
		{&overrides.AuthInfo.ClientCertificate, conf.Policy.K8sClientCertificate},
		{&overrides.AuthInfo.ClientKey, conf.Policy.K8sClientKey},
		{&overrides.ClusterInfo.CertificateAuthority, conf.Policy.K8sCertificateAuthority},
		{&overrides.AuthInfo.Token, conf.Policy.K8sAuthToken},
	} {
		if o.value != "" {
			*o.field = o.value
		}
	}
	if conf.Kubernetes.K8sAPIRoot != "" {
		overrides.ClusterInfo.Server = conf.Kubernetes.K8sAPIRoot
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: conf.Kubernetes.Kubeconfig}, overrides).ClientConfig()
	if err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if conf.Policy.K8sAPIRoot != "" {
		ns, name := podOf(cniArgs)
		if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		return nil
	}
	err = cs.Discovery().RESTClient().Get().
		AbsPath("/apis/crd.projectcalico.org/v1/clusterinformations/default").Do(ctx).Error()
	var status apierrors.APIStatus
	if errors.As(err, &status) && (apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)) {
		err = fmt.Errorf("connection is unauthorized: %w", err)
	}
	if err != nil {
		return fmt.Errorf("error getting ClusterInformation: %w", err)
	}
	return nil
}

// underlayFits checks the conf's MTU against the underlay's, the value of
// CALICO_STANDIN_UNDERLAY_MTU: a pod's interface may not carry more than
// the network under it. 0 is Calico's "detect the MTU", always fine.
func underlayFits(mtu int, underlay string) error {
	if underlay == "" {
		return errors.New("calico stand-in: CALICO_STANDIN_UNDERLAY_MTU is not set in the runtime's environment")
	}
	limit, err := strconv.Atoi(underlay)
	if err != nil || limit <= 0 {
		return fmt.Errorf("calico stand-in: CALICO_STANDIN_UNDERLAY_MTU=%q is not a positive number", underlay)
	}
	if mtu < 0 {
		return fmt.Errorf("mtu %d is not a valid MTU", mtu)
	}
	if mtu > limit {
		return fmt.Errorf("mtu %d is above the underlay's %d", mtu, limit)
	}
	return nil
}

// podOf reads the pod's namespace and name from CNI_ARGS.
func podOf(cniArgs string) (ns, name string) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			ns = v
		case "K8S_POD_NAME":
			name = v
		}
	}
	return ns, name
}

// bridgeConf is the delegate's conf: the reference bridge plugin with
// host-local addresses, on the harness's bridge and subnet.
func bridgeConf(conf netConf) ([]byte, error) {
	env := func(name string) (string, error) {
		if v := os.Getenv(name); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("calico stand-in: %s is not set in the runtime's environment", name)
	}
	bridge, err := env("CALICO_STANDIN_BRIDGE")
	if err != nil {
		return nil, err
	}
	subnet, err := env("CALICO_STANDIN_SUBNET")
	if err != nil {
		return nil, err
	}
	dataDir, err := env("CALICO_STANDIN_IPAM_DIR")
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"cniVersion": conf.CNIVersion, "name": conf.Name, "type": "bridge",
		"bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
		"ipam": map[string]any{"type": "host-local", "subnet": subnet, "dataDir": dataDir},
	})
}
