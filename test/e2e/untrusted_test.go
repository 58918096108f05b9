package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// untrustedEnv is an operator install (policy guard) on the loopback API
// server whose calico-kubeconfig, as calico-node's token watcher writes it,
// holds a healthy token of the CNI account but a CA that did not sign the
// API server's certificate (the cluster's CA was rotated): Calico's plugin
// fails every request at the TLS handshake. The CNI account may make the
// plugin's first request, so the credential is ok once its CA is right.
func untrustedEnv(t *testing.T) (e *env, path string, content []byte) {
	e = newInstallEnv(t, "")
	serveClusterInformation(t, e.ctx, e.kubeconfig)
	if out, err := kubectl(e.ctx, e.kubeconfig, "apply", "--server-side", "-f", filepath.Join("..", "realnode", "testdata", "clusterinformation-default.yaml")); err != nil {
		t.Fatalf("create clusterinformations/default: %v\n%s", err, out)
	}
	e.applyInstall("operator-v3.32.yaml", intoNamespace(e.ns), cniHostPath(t, e.net), apiServerHere())
	name := e.ns + "-calico-cni-plugin"
	_, err := cp.Client.RbacV1().ClusterRoles().Create(e.ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"crd.projectcalico.org"}, Resources: []string{"clusterinformations"}, Verbs: []string{"get"}}}},
		metav1.CreateOptions{})
	must(t, err)
	_, err = cp.Client.RbacV1().ClusterRoleBindings().Create(e.ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: e.ns, Name: "calico-cni-plugin"}}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = cp.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = cp.Client.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	tok, err := cp.TokenFor(e.ctx, e.ns, "calico-cni-plugin", 24*time.Hour)
	must(t, err)
	path = filepath.Join(e.net, "calico-kubeconfig")
	content = tokenWatchKubeconfig(e, "https://"+cp.Host(), anotherCA(t), tok)
	must(t, os.WriteFile(path, content, 0o600))
	return e, path, content
}

// TestUntrustedCredentialRepairedWithTheAgentsCA: the CA in
// calico-kubeconfig does not verify the API server, and the CA the agent
// has (its own API CA) does. drift says so (the credential untrusted, the
// file StaleToken for its CA, with why), and the agent, checking first that
// its CA verifies the server the file names, rewrites the file with that
// CA, keeping the token calico-node wrote (policy guard), raises
// TokenRepaired saying why, and judges the credential again at once: ok,
// InSync.
func TestUntrustedCredentialRepairedWithTheAgentsCA(t *testing.T) {
	e, path, content := untrustedEnv(t)
	_, _, tok, err := e.kubeconfigOnDisk()
	must(t, err)
	caPath := "clusters.0.cluster.certificate-authority-data"

	// Calico's conflist in place, as on any node, so that the probe finds
	// the kubeconfig it names; without the probe, the CA that differs is a
	// hand edit, kept.
	if code, out := e.runNode(e.nodeArgs("--once", "--calico-daemonset", e.ns+"/calico-node")...); code != 1 {
		t.Fatalf("--once: exit %d, want 1 (the kubeconfig's CA kept as an edit)\n%s", code, out)
	}
	code, rep := e.driftJSON("--calico-daemonset", e.ns+"/calico-node", "--credential-probe=true")
	if code != 1 || rep.Token.Verdict != "untrusted" {
		t.Fatalf("drift: exit %d, token %+v, want exit 1 and the verdict untrusted", code, rep.Token)
	}
	if f := fileIn(rep, path); f == nil || f.State != "StaleToken" || !slices.Contains(f.ChangedPaths, caPath) {
		t.Fatalf("drift: calico-kubeconfig %+v, want StaleToken for %s", f, caPath)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Fatal("drift changed calico-kubeconfig")
	}

	e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node", "--token-check-period", "1h", "--credential-probe=true")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitStatus("the credential verdict ok", func(r nodeReport) error {
		if r.Token.Policy != "guard" || r.Token.Verdict != "ok" {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	server, ca, onDisk, err := e.kubeconfigOnDisk()
	must(t, err)
	if !bytes.Equal(ca, cp.CAData()) || onDisk != tok || server != "https://"+cp.Host() {
		t.Fatalf("calico-kubeconfig after the repair: the API server's CA %v, the token kept %v, server %s",
			bytes.Equal(ca, cp.CAData()), onDisk == tok, server)
	}
	ev := e.waitEvent(e.node, "TokenRepaired", "the CA on disk does not verify https://"+cp.Host())
	if !strings.Contains(ev.Message, "the agent's own API CA") || ev.Type != corev1.EventTypeWarning {
		t.Fatalf("TokenRepaired: %s %q, want a Warning naming the CA written", ev.Type, ev.Message)
	}
}

// TestUntrustedCredentialNotRepairedWithACAThatDoesNotHelp: the CA the
// agent has (--ca-file) does not verify the API server either. The
// credential is reported untrusted, the file's status says the agent's CA
// does not help, and nothing is written: the file keeps its bytes over
// several passes.
func TestUntrustedCredentialNotRepairedWithACAThatDoesNotHelp(t *testing.T) {
	e, path, content := untrustedEnv(t)
	caFile := filepath.Join(e.dir, "other-ca.crt")
	must(t, os.WriteFile(caFile, anotherCA(t), 0o644))
	a := e.startNodeAgent("--calico-daemonset", e.ns+"/calico-node", "--token-check-period", "2s", "--credential-probe=true", "--ca-file", caFile)
	e.waitStatus("the credential verdict untrusted, the agent's CA named", func(r nodeReport) error {
		if r.Token.Verdict != "untrusted" {
			return errorf("token %+v", r.Token)
		}
		return nil
	})
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "does not verify https://"+cp.Host(), "--ca-file "+caFile+") does not either")
	writes := a.metric("calico_cni_sync_writes_total")
	e.waitPasses(a, 3)
	if w := a.metric("calico_cni_sync_writes_total"); w != writes {
		t.Fatalf("the agent wrote %v files with a CA that does not verify the server", w-writes)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("calico-kubeconfig changed (%v)", err)
	}
	if ev := e.eventMessages("TokenRepaired"); len(ev) != 0 {
		t.Fatalf("TokenRepaired raised with a CA that does not help: %q", ev)
	}
}

// fileIn is the report's status of the file at path.
func fileIn(rep nodeReport, path string) *struct {
	Path         string   `json:"path"`
	State        string   `json:"state"`
	ChangedPaths []string `json:"changedPaths"`
} {
	for i := range rep.Files {
		if rep.Files[i].Path == path {
			return &rep.Files[i]
		}
	}
	return nil
}
