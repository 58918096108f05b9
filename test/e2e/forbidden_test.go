package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// TestForbiddenCredentialIsReportedNeverRewritten: the CNI account's
// ClusterRoleBinding deleted, as the manifest to operator migration left it
// on real clusters. The token in calico-kubeconfig still authenticates, but
// Calico's plugin is refused its first request (a GET of
// clusterinformations/default), so every new pod on the node would fail.
// The agent, judging the token by that request with the file's own server,
// CA and token, says so: condition CNIForbidden naming the refused verb and
// resource and the ClusterRoleBinding, a Warning event CNIForbidden, the
// metric calico_cni_sync_credential_verdict{plugin="calico",verdict=
// "forbidden"} at 1, token.verdict forbidden in the status file; and it
// writes nothing (no new token fixes RBAC: the file keeps its bytes). The
// node's CalicoCNICredentialHealthy condition, what a NodeReadinessRule
// acts on, follows: True while the binding is there, False
// (CredentialForbidden) without it. The binding restored, the node is
// InSync and CalicoCNICredentialHealthy True again.
func TestForbiddenCredentialIsReportedNeverRewritten(t *testing.T) {
	e := newInstallEnv(t, "")
	e.applyInstall("operator-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net), apiServerHere())
	// The fixture's cluster-scoped RBAC is another test's to hold; this
	// install's CNI account has Calico's CNI ClusterRole through the
	// env's own binding (bindCNIAccounts), which this test takes away.
	binding, err := cp.Client.RbacV1().ClusterRoleBindings().Get(e.ctx, e.cniBinding, metav1.GetOptions{})
	must(t, err)
	// A Linux node, as the node-readiness Component's rule selects.
	_, err = cp.Client.CoreV1().Nodes().Patch(e.ctx, e.node, types.MergePatchType, []byte(`{"metadata":{"labels":{"kubernetes.io/os":"linux"}}}`), metav1.PatchOptions{})
	must(t, err)

	// install-cni's address edited to the loopback API server: the
	// probe dials the server the file names.
	server := "https://" + cp.Host()
	tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", 24*time.Hour)
	must(t, err)
	path := filepath.Join(e.net, "calico-kubeconfig")
	content := tokenWatchKubeconfig(e, server, cp.CAData(), tok)
	must(t, os.WriteFile(path, content, 0o600))

	e.waitRuleTaints(false) // no condition yet: the rule's defaultStatus
	a := e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node", "--token-check-period", "2s")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitHealthy(e.node, corev1.ConditionTrue, "CredentialOK")
	e.waitRuleTaints(false)
	e.waitStatus("the credential verdict ok", func(r nodeReport) error {
		if r.Token.Policy != "guard" || r.Token.Verdict != "ok" {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	writes := a.metric("calico_cni_sync_writes_total")

	must(t, cp.Client.RbacV1().ClusterRoleBindings().Delete(e.ctx, binding.Name, metav1.DeleteOptions{}))
	subject := saSubject(e.ns, "calico-cni-plugin")
	e.waitCondition(e.node, corev1.ConditionTrue, "CNIForbidden",
		"get clusterinformations.crd.projectcalico.org", subject, "ClusterRoleBinding calico-cni-plugin")
	e.waitHealthy(e.node, corev1.ConditionFalse, "CredentialForbidden", "get clusterinformations.crd.projectcalico.org")
	e.waitRuleTaints(true)
	e.waitEvent(e.node, "CNIForbidden", "get clusterinformations.crd.projectcalico.org")
	e.waitStatus("the credential verdict forbidden", func(r nodeReport) error {
		if r.Token.Verdict != "forbidden" || r.Token.Accepted == nil || !*r.Token.Accepted {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	if v := a.metric("calico_cni_sync_credential_verdict", `plugin="calico"`, `verdict="forbidden"`); v != 1 {
		t.Fatalf("credential_verdict{calico,forbidden} = %v, want 1", v)
	}
	if v := a.metric("calico_cni_sync_credential_verdict", `plugin="calico"`, `verdict="ok"`); v != 0 {
		t.Fatalf("credential_verdict{calico,ok} = %v, want 0", v)
	}
	// Several token checks later: still nothing written, the file as it was.
	e.waitPasses(a, 3)
	if w := a.metric("calico_cni_sync_writes_total"); w != writes {
		t.Fatalf("the agent wrote %v files for a forbidden credential (%v before)", w-writes, writes)
	}
	got, err := os.ReadFile(path)
	must(t, err)
	if !bytes.Equal(got, content) {
		t.Fatal("the agent changed calico-kubeconfig for a forbidden credential")
	}
	if ev := e.eventMessages("TokenRepaired"); len(ev) != 0 {
		t.Fatalf("TokenRepaired raised for a forbidden credential: %q", ev)
	}
	if n := len(e.events(e.node, "CNIForbidden")); n != 1 {
		t.Fatalf("%d CNIForbidden events, want 1 (once per cause)", n)
	}

	binding.ResourceVersion, binding.UID = "", ""
	_, err = cp.Client.RbacV1().ClusterRoleBindings().Create(e.ctx, binding, metav1.CreateOptions{})
	must(t, err)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitHealthy(e.node, corev1.ConditionTrue, "CredentialOK")
	e.waitRuleTaints(false)
	e.waitStatus("the credential verdict ok again", func(r nodeReport) error {
		if r.Token.Verdict != "ok" {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	if v := a.metric("calico_cni_sync_credential_verdict", `plugin="calico"`, `verdict="forbidden"`); v != 0 {
		t.Fatalf("credential_verdict{calico,forbidden} = %v after the binding came back, want 0", v)
	}

	// Multus' kubeconfig, found through its conf, judged by Multus' first
	// request (a GET of a pod): reported by the agent and by drift, and
	// never written, also once its account is deleted.
	cniAccount(t, e.ctx, e.ns, "multus", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}})
	multusTok, err := cp.TokenFor(e.ctx, e.ns, "multus", 0)
	must(t, err)
	const multusHost = "/etc/cni/net.d/multus.d/multus.kubeconfig"
	multusPath := filepath.Join(e.net, "multus.d", "multus.kubeconfig")
	must(t, os.MkdirAll(filepath.Dir(multusPath), 0o755))
	multusKC := cniconf.Kubeconfig{Server: "https://" + cp.Host(), CAData: cp.CAData(), Token: multusTok}.Bytes()
	must(t, os.WriteFile(multusPath, multusKC, 0o600))
	must(t, os.WriteFile(filepath.Join(e.net, "00-multus.conf"), []byte(`{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus",
		"kubeconfig":"`+multusHost+`","delegates":[{"cniVersion":"0.3.1","name":"k8s-pod-network",
		"plugins":[{"type":"portmap","capabilities":{"portMappings":true}}]}]}`), 0o644))
	e.waitStatus("Multus' credential ok", func(r nodeReport) error {
		if v, msg, _ := r.credential("multus", multusHost); v != "ok" {
			return errorf("multus: %q %s (%+v)", v, msg, r.Credentials)
		}
		return nil
	})
	must(t, cp.Client.CoreV1().ServiceAccounts(e.ns).Delete(e.ctx, "multus", metav1.DeleteOptions{}))
	e.waitStatus("Multus' credential rejected", func(r nodeReport) error {
		if v, msg, _ := r.credential("multus", multusHost); v != "rejected" {
			return errorf("multus: %q %s", v, msg)
		}
		return nil
	})
	_, rep := e.driftJSON("--calico-daemonset", e.ns+"/calico-node")
	if v, msg, _ := rep.credential("multus", multusHost); v != "rejected" {
		t.Fatalf("drift -o json: multus %q %s (%+v)", v, msg, rep.Credentials)
	}
	if v, _, _ := rep.credential("calico", "/etc/cni/net.d/calico-kubeconfig"); v != "ok" {
		t.Fatalf("drift -o json: calico's credential %q (%+v)", v, rep.Credentials)
	}
	if got, err := os.ReadFile(multusPath); err != nil || !bytes.Equal(got, multusKC) {
		t.Fatalf("Multus' kubeconfig was changed (%v)", err)
	}
	if v := a.metric("calico_cni_sync_credential_verdict", `plugin="multus"`, `verdict="rejected"`); v != 1 {
		t.Fatalf("credential_verdict{multus,rejected} = %v, want 1", v)
	}
}

// apiServerHere points install-cni's literal KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, and the operator's k8s_api_root in cni-config,
// at the loopback API server, as installCalico does: the credential the
// plugin would use names it, never the fixture's cluster address, which
// the agent's credential probe would dial (and the dial guard refuse).
// Every operator install a test applies with an agent probing takes it.
func apiServerHere() installEdit {
	host, port, _ := strings.Cut(apiService(), ":")
	return func(u *unstructured.Unstructured) bool {
		if u.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			for k, v := range data {
				data[k] = strings.ReplaceAll(v, "https://10.96.0.1:443", "https://"+apiService())
			}
			if data != nil {
				_ = unstructured.SetNestedStringMap(u.Object, data, "data")
			}
			return true
		}
		if u.GetKind() != "DaemonSet" {
			return true
		}
		for _, field := range []string{"initContainers", "containers"} {
			list, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", field)
			for _, c := range list {
				env, _ := c.(map[string]any)["env"].([]any)
				for _, v := range env {
					kv := v.(map[string]any)
					switch kv["name"] {
					case "KUBERNETES_SERVICE_HOST":
						if _, literal := kv["value"]; literal {
							kv["value"] = host
						}
					case "KUBERNETES_SERVICE_PORT":
						if _, literal := kv["value"]; literal {
							kv["value"] = port
						}
					}
				}
			}
			if list != nil {
				_ = unstructured.SetNestedSlice(u.Object, list, "spec", "template", "spec", field)
			}
		}
		return true
	}
}
