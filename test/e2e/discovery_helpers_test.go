package e2e

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// nodeArgs are the flags that place the agent on this env's node: its own
// credentials, its directories and a free port. None names an input: the
// DaemonSet, ConfigMaps, token source, service account and policy are all
// discovered, as with the shipped DaemonSet (args: []), and the credential
// is probed as it ships (the env's CNI accounts have Calico's RBAC, and the
// dial guard fails a run whose agent dials off loopback). Tests that isolate
// their install in a namespace of their own add --calico-daemonset.
func (e *env) nodeArgs(extra ...string) []string {
	return append([]string{"--kubeconfig", e.kubeconfig, "--cni-net-dir", e.net,
		"--state-dir", filepath.Join(e.dir, "state"), "--backup-dir", filepath.Join(e.dir, "backups"),
		"--status-file", e.statusFile(), "--http-addr", "127.0.0.1:0"}, extra...)
}

func (e *env) statusFile() string { return filepath.Join(e.dir, "status.json") }

// nodeEnv is the agent's environment as its DaemonSet gives it: NODE_NAME
// from spec.nodeName, and the kubelet's KUBERNETES_SERVICE_HOST/PORT (here
// the loopback API server, see procEnv).
func (e *env) nodeEnv() []string {
	var out []string
	for _, kv := range procEnv() {
		if !strings.HasPrefix(kv, "NODE_NAME=") && !strings.HasPrefix(kv, "KUBERNETES_NODE_NAME=") {
			out = append(out, kv)
		}
	}
	return append(out, "NODE_NAME="+e.node)
}

// runNode runs a command with nodeEnv and checks no token reached its
// output.
func (e *env) runNode(args ...string) (int, string) {
	e.t.Helper()
	return e.runWith(e.nodeEnv(), args...)
}

// startNodeAgent starts the agent with nodeArgs and nodeEnv and waits until
// it is ready; like startAgent, it is stopped with SIGTERM at cleanup and
// must exit 0, leave no temporary file and have logged no token.
func (e *env) startNodeAgent(extra ...string) *agent {
	e.t.Helper()
	a := e.launchAgentWith(e.nodeEnv(), e.node, e.net, append([]string{binary}, append(e.nodeArgs(extra...), "-v", "1")...))
	e.eventually(60*time.Second, "agent ready", func() error { return a.probe("/readyz") })
	return a
}

// nodeReport is what drift -o json prints and the status file holds, as far
// as these tests read it.
type nodeReport struct {
	Files []struct {
		Path         string   `json:"path"`
		State        string   `json:"state"`
		ChangedPaths []string `json:"changedPaths"`
	} `json:"files"`
	Source *struct {
		Kind       string   `json:"kind"`
		DaemonSet  string   `json:"daemonset"`
		Container  string   `json:"container"`
		Pod        string   `json:"pod"`
		ConfigMaps []string `json:"configMaps"`
	} `json:"source"`
	Token struct {
		Source         string  `json:"source"`
		Secret         string  `json:"secret"`
		Policy         string  `json:"policy"`
		ServiceAccount string  `json:"serviceAccount"`
		ManagedBy      string  `json:"managedBy"`
		Subject        *string `json:"subject"`
		Accepted       *bool   `json:"accepted"`
		Verdict        string  `json:"verdict"`
	} `json:"token"`
	Credentials []struct {
		Path    string `json:"path"`
		Plugin  string `json:"plugin"`
		Verdict string `json:"verdict"`
		Message string `json:"message"`
	} `json:"credentials"`
}

// credential is the verdict reported for one plugin's credential at path,
// "" when none is.
func (r nodeReport) credential(plugin, path string) (verdict, message string, found bool) {
	for _, c := range r.Credentials {
		if c.Plugin == plugin && c.Path == path {
			return c.Verdict, c.Message, true
		}
	}
	return "", "", false
}

// driftJSON runs drift -o json; exit 0 means every file is InSync and the
// token on disk is not rejected.
func (e *env) driftJSON(extra ...string) (int, nodeReport) {
	e.t.Helper()
	code, out := e.runNode(e.nodeArgs(append([]string{"drift", "-o", "json"}, extra...)...)...)
	var rep nodeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("drift -o json: exit %d, %v\n%s", code, err, out)
	}
	return code, rep
}

// waitStatus waits until the agent's status file satisfies check.
func (e *env) waitStatus(what string, check func(nodeReport) error) {
	e.t.Helper()
	e.eventually(60*time.Second, "status file: "+what, func() error {
		b, err := os.ReadFile(e.statusFile())
		if err != nil {
			return err
		}
		var rep nodeReport
		if err := json.Unmarshal(b, &rep); err != nil {
			return err
		}
		return check(rep)
	})
}

// waitContent waits until a file on the node holds exactly want: what
// install-cni would write, byte for byte.
func (e *env) waitContent(name, what, want string) {
	e.t.Helper()
	var got string
	e.eventually(60*time.Second, name+": "+what, func() error {
		b, err := os.ReadFile(filepath.Join(e.net, name))
		if err != nil {
			return err
		}
		if got = string(b); got != want {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

// kubeconfigOnDisk reads calico-kubeconfig the way the CNI plugin reads it,
// without dialling anything: the server it names may be a cluster address
// (10.96.0.1) that does not exist here.
func (e *env) kubeconfigOnDisk() (server string, ca []byte, token string, err error) {
	cfg, err := clientcmd.LoadFromFile(filepath.Join(e.net, "calico-kubeconfig"))
	if err != nil {
		return "", nil, "", err
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil || cfg.Clusters[kctx.Cluster] == nil || cfg.AuthInfos[kctx.AuthInfo] == nil {
		return "", nil, "", fmt.Errorf("calico-kubeconfig: no current context, cluster or user")
	}
	return cfg.Clusters[kctx.Cluster].Server, cfg.Clusters[kctx.Cluster].CertificateAuthorityData, cfg.AuthInfos[kctx.AuthInfo].Token, nil
}

// whoIsTokenOnDisk is who the API server says the token in
// calico-kubeconfig is, asked over loopback with that token alone; it also
// returns the token, to tell it from another.
func (e *env) whoIsTokenOnDisk() (who, token string, err error) {
	_, _, token, err = e.kubeconfigOnDisk()
	if err != nil {
		return "", "", err
	}
	who, err = e.whoIsToken(token)
	return who, token, err
}

// tokenWatchKubeconfig is calico-kubeconfig exactly as calico-node's token
// watcher writes it (installs/kubeconfig-token-watch.txt): its header, the
// CA quoted, no trailing newline.
func tokenWatchKubeconfig(e *env, server string, ca []byte, token string) []byte {
	e.t.Helper()
	layout, err := os.ReadFile(installsPath("kubeconfig-token-watch.txt"))
	must(e.t, err)
	return []byte(strings.NewReplacer("@@SERVER@@", server, "@@CA_B64@@", base64.StdEncoding.EncodeToString(ca), "@@TOKEN@@", token).Replace(string(layout)))
}

// boundToDeletedSecret is a token of account bound to a Secret that is
// deleted once the token is issued: the API server rejects it (as it does
// a token whose pod is gone). It is never used before the Secret is gone,
// so no authentication cache holds a success for it; the wait covers the
// API server's Secret cache.
func (e *env) boundToDeletedSecret(account string) string {
	e.t.Helper()
	s, err := e.client.CoreV1().Secrets(e.ns).Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{GenerateName: "bound-"}}, metav1.CreateOptions{})
	must(e.t, err)
	secs := int64(3600)
	tr, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(e.ctx, account, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &secs,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: s.Name, UID: s.UID},
	}}, metav1.CreateOptions{})
	must(e.t, err)
	must(e.t, e.client.CoreV1().Secrets(e.ns).Delete(e.ctx, s.Name, metav1.DeleteOptions{}))
	e.eventually(60*time.Second, "the token bound to a deleted Secret is rejected", func() error {
		if _, err := e.whoIsToken(tr.Status.Token); !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("not rejected yet (%v)", err)
		}
		return nil
	})
	return tr.Status.Token
}

// reissued is a real token of the API server with its times moved and
// signed again with the API server's own key and kid: a token the API
// server accepts, issued at iat and expiring at exp, which it would never
// have issued so. The kid is checked against the one kube-apiserver
// computes from the key (base64url of the SHA-256 of the public key's
// PKIX DER), so the token is signed as the API server signs.
func reissued(e *env, real string, iat, exp time.Time) string {
	e.t.Helper()
	parts := strings.Split(real, ".")
	if len(parts) != 3 {
		e.t.Fatal("not a JWT")
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	must(e.t, err)
	var h struct{ Alg, Kid string }
	must(e.t, json.Unmarshal(header, &h))
	raw, err := os.ReadFile(cp.SigningKeyFile())
	must(e.t, err)
	block, _ := pem.Decode(raw)
	if block == nil {
		e.t.Fatal("signing key: no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	must(e.t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	must(e.t, err)
	sum := sha256.Sum256(der)
	if kid := base64.RawURLEncoding.EncodeToString(sum[:]); h.Alg != "RS256" || h.Kid != kid {
		e.t.Fatalf("the API server signs with %s kid %q; the key file gives RS256 kid %q", h.Alg, h.Kid, kid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(e.t, err)
	var claims map[string]any
	must(e.t, json.Unmarshal(payload, &claims))
	claims["iat"], claims["nbf"], claims["exp"] = iat.Unix(), iat.Unix(), exp.Unix()
	payload, err = json.Marshal(claims)
	must(e.t, err)
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	must(e.t, err)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// subject is the user name of a service account's tokens.
func saSubject(ns, sa string) string { return "system:serviceaccount:" + ns + ":" + sa }

// eventMessages are the messages of the node's events with a reason, for a
// failure to show.
func (e *env) eventMessages(reason string) []string {
	var out []string
	for _, ev := range e.events(e.node, reason) {
		out = append(out, ev.Message)
	}
	return out
}

// requireNoDaemonSet fails when a DaemonSet that discovery looks at before
// this test's exists: another test left it, and the agent would rightly
// pick it.
func (e *env) requireNoDaemonSet(ns, name string) {
	e.t.Helper()
	if _, err := e.client.AppsV1().DaemonSets(ns).Get(e.ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		e.t.Fatalf("DaemonSet %s/%s, which discovery finds first, exists (left by another test?): %v", ns, name, err)
	}
}

// expiryOf is a JWT's exp claim, read without verifying it.
func expiryOf(t testing.TB, token string) int64 {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var c struct {
		Exp int64 `json:"exp"`
	}
	must(t, json.Unmarshal(payload, &c))
	return c.Exp
}
