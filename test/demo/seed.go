package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// The seed's cluster: Calico v2.6 in kube-system, its calico-config and the
// legacy token Secret of calico-node, on its own node and CNI directory.
const ns, node = "kube-system", "demo-node"

// seedStory tells the seed's story, and stops its agent at the end.
// linuxNode is the label the kubelet puts on a Linux node, which report
// selects by default (the agent's DaemonSet runs only there).
var linuxNode = map[string]string{"kubernetes.io/os": "linux"}

func seedStory(ctx context.Context, e *env) error {
	c := e.c
	step("Applying the seed-era calico-config (%s): a single-plugin 10-calico.conf with the token inside", filepath.Base(e.o.fixture))
	raw, err := os.ReadFile(e.o.fixture)
	if err != nil {
		return err
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return err
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: linuxNode}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Calico v2.6's manifest grants calico-node what its CNI plugin asks
	// first (a GET of the pod), which the agent's credential probe asks too.
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "calico-node-" + ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "nodes", "namespaces"}, Verbs: []string{"get"}}}}
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "calico-node"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	first, err := newTokenSecret(ctx, c, "calico-node-token-x7k2p")
	if err != nil {
		return err
	}
	fmt.Println("   ServiceAccount calico-node (with the get of pods Calico v2.6's RBAC grants its CNI plugin), token Secret calico-node-token-x7k2p populated by the token controller:", cniconf.RedactedToken(first))

	common := e.agentArgs(node, "seed")
	netDir := filepath.Join(e.dir, "seed", "etc-cni-net.d")
	step("Starting the calico-cni-sync agent for %s, with %s standing in for /etc/cni/net.d", node, netDir)
	agent, err := startAgent(ctx, e.o.binary, common, e.agentEnv, filepath.Join(e.dir, "seed-agent.log"))
	if err != nil {
		return err
	}
	defer agent.stop("The seed's agent stopped")
	conf := filepath.Join(netDir, "10-calico.conf")
	if err := waitFor(ctx, "the agent writes 10-calico.conf", func() bool { return contains(conf, first) }); err != nil {
		return err
	}
	show(conf, first)
	if err := waitCondition(ctx, c, node, "InSync"); err != nil {
		return err
	}

	step("The token Secret is deleted and regenerated under a NEW name (the failure that strands nodes)")
	if err := c.CoreV1().Secrets(ns).Delete(ctx, "calico-node-token-x7k2p", metav1.DeleteOptions{}); err != nil {
		return err
	}
	second, err := newTokenSecret(ctx, c, "calico-node-token-9fq4m")
	if err != nil {
		return err
	}
	fmt.Println("   new Secret calico-node-token-9fq4m:", cniconf.RedactedToken(second))
	start := time.Now()
	if err := waitFor(ctx, "the new token in 10-calico.conf", func() bool { return contains(conf, second) }); err != nil {
		return err
	}
	if d := time.Since(start); d < time.Millisecond {
		fmt.Printf("   10-calico.conf already holds %s: the agent wrote it before the demo could look; no restart\n", cniconf.RedactedToken(second))
	} else {
		fmt.Printf("   10-calico.conf now holds %s, %s after the demo saw the Secret populated; no restart\n", cniconf.RedactedToken(second), d.Round(time.Millisecond))
	}

	step("Someone edits 10-calico.conf by hand on the node (mtu 1500 -> 1400)")
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	if err := os.WriteFile(conf+".edit", []byte(strings.Replace(string(b), `"mtu": 1500`, `"mtu": 1400`, 1)), 0o600); err != nil {
		return err
	}
	if err := os.Rename(conf+".edit", conf); err != nil {
		return err
	}
	if err := waitCondition(ctx, c, node, "Drifted"); err != nil {
		return err
	}
	printEvents(ctx, c, node)

	step("calico-cni-sync drift --suggest on the node (exit 1: not InSync; where the edit must be made to last)")
	drift(ctx, e, node, "seed", "--suggest")

	step("calico-cni-sync report: every node's state, from the Node conditions")
	report := exec.CommandContext(ctx, e.o.binary, "report", "--kubeconfig", e.kubeconfig)
	out, _ := report.CombinedOutput()
	fmt.Print(indent(cniconf.Redact(string(out))))
	if !strings.Contains(string(out), node) {
		return fmt.Errorf("report does not list node %s", node)
	}
	fmt.Println("\nThe edit is kept (--on-drift=report) and the cluster knows about it before a restart throws it away.")
	return nil
}

func newTokenSecret(ctx context.Context, c kubernetes.Interface, name string) (string, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
		Type: corev1.SecretTypeServiceAccountToken}
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var token string
	err := waitFor(ctx, "the token controller populates "+name, func() bool {
		got, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		token = string(got.Data["token"])
		return err == nil && token != ""
	})
	return token, err
}
