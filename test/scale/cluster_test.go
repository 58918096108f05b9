package scale

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/test/agentbin"
	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	testharness "github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// seedNamespace holds the seed's install: calico-config and calico-node's
// legacy token Secret.
const seedNamespace = "scale-seed"

func fixture(name string) string { return filepath.Join("..", "testdata", "fixtures", name) }

// buildAgent builds the agent as the Dockerfile does.
func buildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "calico-cni-sync")
	if err := agentbin.Shipped(bin); err != nil {
		return "", err
	}
	return bin, os.Chmod(bin, 0o755)
}

func copyBinary(from, to string) (string, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return "", err
	}
	return to, os.WriteFile(to, b, 0o755)
}

// cluster is the control plane with what every fleet shares.
type cluster struct {
	cp    *controlplane.ControlPlane
	audit *auditLog
	admin string // admin kubeconfig, for kubectl
}

func (c *cluster) hostPort() (string, string) {
	host, port, _ := strings.Cut(c.cp.Host(), ":")
	return host, port
}

// installOperator applies the tigera operator's v3.32 objects, as the e2e
// tests do: the API address the operator wrote into the DaemonSet is this
// cluster's, on loopback, never the fixture's real one.
func (c *cluster) installOperator(ctx context.Context, dir string) error {
	raw, err := os.ReadFile(fixture("installs/operator-v3.32.yaml"))
	if err != nil {
		return err
	}
	host, port := c.hostPort()
	manifest := strings.ReplaceAll(string(raw), "value: 10.96.0.1\n", "value: "+host+"\n")
	manifest = strings.ReplaceAll(manifest, "value: \"443\"\n", "value: \""+port+"\"\n")
	// And into cni-config's k8s_api_root, which the agent's credential
	// probe dials as Calico's plugin does.
	manifest = strings.ReplaceAll(manifest, "https://10.96.0.1:443", "https://"+net.JoinHostPort(host, port))
	var docs []string
	for _, d := range strings.Split(manifest, "\n---\n") {
		if !regexp.MustCompile(`(?m)^kind: Namespace$`).MatchString(d) {
			docs = append(docs, d)
		}
	}
	if err := c.ensureNamespace(ctx, "calico-system"); err != nil {
		return err
	}
	path := filepath.Join(dir, "operator-v3.32.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, filepath.Join("..", "bin", "kubectl"), "--kubeconfig", c.admin,
		"apply", "--server-side", "--force-conflicts", "--field-manager", "calico-install", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	return nil
}

// installSeed creates the seed's story in seedNamespace: calico-config from
// the v3.32 fixture, the calico-node ServiceAccount and its legacy token
// Secret, populated by kube-controller-manager.
func (c *cluster) installSeed(ctx context.Context) (string, error) {
	if err := c.ensureNamespace(ctx, seedNamespace); err != nil {
		return "", err
	}
	raw, err := os.ReadFile(fixture("calico-config-v3.32.yaml"))
	if err != nil {
		return "", err
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return "", err
	}
	cm.ObjectMeta = metav1.ObjectMeta{Name: "calico-config"}
	if _, err := c.cp.Client.CoreV1().ConfigMaps(seedNamespace).Create(ctx, &cm, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}
	if _, err := c.cp.Client.CoreV1().ServiceAccounts(seedNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	// calico-node's token is the CNI's: Calico's CNI ClusterRole, as its
	// install binds it, so each agent's credential probe finds it ok.
	if err := testharness.ServeCalicoCNI(ctx, c.cp.Config, c.cp.Client); err != nil {
		return "", err
	}
	if err := testharness.BindCNIAccounts(ctx, c.cp.Client, "scale-cni-"+seedNamespace, seedNamespace); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	name := "calico-node-token-s0001"
	_, err = c.newTokenSecret(ctx, name)
	return name, err
}

// newTokenSecret creates a legacy token Secret for calico-node and waits
// until the token controller has populated it.
func (c *cluster) newTokenSecret(ctx context.Context, name string) (string, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
		Type: corev1.SecretTypeServiceAccountToken}
	if _, err := c.cp.Client.CoreV1().Secrets(seedNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var token string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.cp.Client.CoreV1().Secrets(seedNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = string(got.Data["token"])
		return token != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("token Secret %s not populated: %w", name, err)
	}
	return token, nil
}

func (c *cluster) ensureNamespace(ctx context.Context, ns string) error {
	_, err := c.cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// agentIdentities gives agent i the ServiceAccount agentNamespace/agent-i,
// bound to cluster-admin through the namespace's group, and returns its
// token: each agent's requests are then told apart in the audit log by
// user name. (The DaemonSet shares one ServiceAccount; one each is the
// cheapest way to attribute requests, and costs the API server nothing
// more than a cached token check per request.)
func (c *cluster) agentIdentities(ctx context.Context, n int) ([]string, error) {
	if err := c.ensureNamespace(ctx, agentNamespace); err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-cni-sync-scale"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:serviceaccounts:" + agentNamespace}},
	}
	if _, err := c.cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	tokens := make([]string, n)
	for i := range tokens {
		tok, err := c.cp.TokenFor(ctx, agentNamespace, fmt.Sprintf("agent-%d", i), 12*time.Hour)
		if err != nil {
			return nil, err
		}
		tokens[i] = tok
	}
	return tokens, nil
}

// createNodes registers the fleet's Nodes and, on the operator install,
// each node's calico-node Pod as the DaemonSet controller would, its CNI
// hostPath the node's directory (the agent refuses to write a directory
// install-cni does not).
func (c *cluster) createNodes(ctx context.Context, nodes []*node, withPods bool) error {
	var tmpl *corev1.PodTemplateSpec
	var owner []metav1.OwnerReference
	if withPods {
		ds, err := c.cp.Client.AppsV1().DaemonSets("calico-system").Get(ctx, "calico-node", metav1.GetOptions{})
		if err != nil {
			return err
		}
		tmpl = &ds.Spec.Template
		yes := true
		owner = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: &yes}}
	}
	for _, n := range nodes {
		nd := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
		if _, err := c.cp.Client.CoreV1().Nodes().Create(ctx, nd, metav1.CreateOptions{}); err != nil {
			return err
		}
		if tmpl == nil {
			continue
		}
		spec := tmpl.Spec.DeepCopy()
		spec.NodeName = n.name
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == "cni-net-dir" && spec.Volumes[i].HostPath != nil {
				spec.Volumes[i].HostPath.Path = n.net
			}
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "calico-node-" + n.name, Namespace: "calico-system",
			Labels: tmpl.Labels, OwnerReferences: owner}, Spec: *spec}
		if _, err := c.cp.Client.CoreV1().Pods("calico-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// deleteNodes removes a fleet's Nodes and Pods (no kubelet will confirm a
// graceful deletion).
func (c *cluster) deleteNodes(ctx context.Context, nodes []*node) {
	zero := int64(0)
	for _, n := range nodes {
		_ = c.cp.Client.CoreV1().Pods("calico-system").Delete(ctx, "calico-node-"+n.name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		_ = c.cp.Client.CoreV1().Nodes().Delete(ctx, n.name, metav1.DeleteOptions{})
	}
}
