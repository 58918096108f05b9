package realnode

import (
	"context"
	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// install is one kind of Calico install the agent runs beside.
type install struct {
	fixture   string        // test/testdata/fixtures/installs
	edits     []installEdit // to make it apply on a current API server
	manifests string        // the agent's kustomization, from the repository root
	conf      string        // the CNI config file install-cni writes
	account   string        // the CNI account, namespace/name
	guard     bool          // calico-node refreshes the token (policy guard), else own
	// unauthorized is how Calico's plugin fails ADD with a rejected token.
	unauthorized string
	// breakToken makes the CNI token on disk stop working while the agent
	// is away, as the seed's clusters saw it.
	breakToken func(c *cluster)
	// prepare creates what the install's users had before the agent.
	prepare func(c *cluster)
}

// setUp applies the install, creates what its users had, and imports the
// agent's image into the node's containerd. It returns the image's tag.
func (inst install) setUp(c *cluster) string {
	c.t.Helper()
	c.applyInstall(inst.fixture, inst.edits...)
	inst.prepare(c)
	archive, tag := c.agentArchive()
	if err := c.node.ImportImage(archive); err != nil {
		c.t.Fatal(err)
	}
	return tag
}

// calicoV3Unauthorized is the seed's event, as the kubelet words it.
const calicoV3Unauthorized = `failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized`

// rotateSigningKey restarts the API server with a new service-account
// signing key: every token signed before is rejected.
func rotateSigningKey(c *cluster) {
	c.t.Helper()
	if err := c.cp.RestartAPIServer(c.ctx, true); err != nil {
		c.t.Fatal(err)
	}
}

var (
	manifestV332 = install{
		fixture: "manifest-v3.32.yaml", manifests: "manifests", conf: "10-calico.conflist",
		account: "kube-system/calico-cni-plugin", guard: true, breakToken: rotateSigningKey, unauthorized: calicoV3Unauthorized,
		prepare: (*cluster).applyClusterInformation,
	}
	operatorV332 = install{
		fixture: "operator-v3.32.yaml", manifests: "manifests/overlays/operator", conf: "10-calico.conflist",
		account: "calico-system/calico-cni-plugin", guard: true, breakToken: rotateSigningKey, unauthorized: calicoV3Unauthorized,
		prepare: (*cluster).applyClusterInformation,
	}
	// The seed's cluster: the token in the conf, from calico-node's legacy
	// token Secret, which was deleted and regenerated under a new name.
	manifestV26 = install{
		fixture: "manifest-v2.6.yaml", edits: []installEdit{harness.ServedAPIs}, manifests: "manifests/overlays/legacy-secret",
		conf: "10-calico.conf", account: "kube-system/calico-node", unauthorized: `failed (add): Unauthorized`,
		prepare: func(c *cluster) { c.legacyTokenSecret("calico-node-token-seed1") },
		breakToken: func(c *cluster) {
			c.t.Helper()
			token, _ := jsonField(c.t, readFile(c.t, "10-calico.conf"), "policy", "k8s_auth_token").(string)
			if err := c.cp.Client.CoreV1().Secrets("kube-system").Delete(c.ctx, "calico-node-token-seed1", metav1.DeleteOptions{}); err != nil {
				c.t.Fatal(err)
			}
			c.legacyTokenSecret("calico-node-token-seed2")
			c.waitRejected(token)
		},
	}
)

// waitRejected waits until the API server rejects token: it caches a
// token's authentication for some seconds after its Secret is deleted.
func (c *cluster) waitRejected(token string) {
	c.t.Helper()
	cs, err := kubernetes.NewForConfig(c.cp.ConfigForToken(token))
	if err != nil {
		c.t.Fatal(err)
	}
	c.waitFor("the old token rejected", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		return apierrors.IsUnauthorized(err), err
	})
}

// legacyTokenSecret creates calico-node's token Secret under name and waits
// until the token controller has filled it in.
func (c *cluster) legacyTokenSecret(name string) {
	c.t.Helper()
	harness.NewTokenSecret(c.t, c.ctx, c.cp.Client, "kube-system", name)
}
