package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// Suite-wide: one control plane and one binary for the package.
var (
	cp     *controlplane.ControlPlane
	binary string
	seq    atomic.Int32
	// guard refuses, and reports, what an agent dials off loopback.
	guard *dialGuard
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		flag.Parse() // the benchmark flags say which binary to build
		var stop func()
		var err error
		cp, binary, stop, err = harness.Setup("e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stop()
		if guard, err = startDialGuard(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		if dialled := guard.dialled(); len(dialled) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: an agent dialled addresses that are not the test API server's (a rendered kubeconfig names the fixtures' cluster address?): %s\n", strings.Join(dialled, ", "))
			return 1
		}
		return code
	}())
}

// env is one test's slice of the cluster: its own namespace (holding
// calico-config, the calico-node ServiceAccount and its token Secret), its own
// Node and node directory.
type env struct {
	t          testing.TB
	ctx        context.Context
	client     kubernetes.Interface
	ns, node   string
	dir, net   string
	kubeconfig string // the agent's credentials (admin unless a test says otherwise)
	// bare runs the agent with no input flags at all (no --namespace, no
	// token flags), as the manifests run it.
	bare   bool
	secret string // the current token Secret
	// cniBinding grants the env's CNI accounts Calico's CNI ClusterRole
	// (bindCNIAccounts).
	cniBinding string
}

func newEnv(t testing.TB, fixture string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	n := seq.Add(1)
	e := &env{t: t, ctx: ctx, client: cp.Client, ns: fmt.Sprintf("calico-%d", n), node: fmt.Sprintf("node-%d", n), dir: t.TempDir()}
	e.net = filepath.Join(e.dir, "net.d")
	must(t, os.MkdirAll(e.net, 0o755))
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{})
	must(t, err)
	_, err = cp.Client.CoreV1().Nodes().Create(ctx, linuxNode(e.node), metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = cp.Client.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{})
		_ = cp.Client.CoreV1().Nodes().Delete(context.Background(), e.node, metav1.DeleteOptions{})
	})
	_, err = cp.Client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}, metav1.CreateOptions{})
	must(t, err)
	e.cniBinding = bindCNIAccounts(t, ctx, e.ns)
	e.applyFixture(fixture)
	e.secret = e.newTokenSecret("calico-node-token-a0001")
	e.kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, cp.Config))
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixturePath is a fixture ConfigMap in test/testdata/fixtures.
func fixturePath(name string) string {
	return filepath.Join("..", "testdata", "fixtures", name)
}

// applyFixture creates or replaces calico-config from a fixture.
func (e *env) applyFixture(name string) {
	e.t.Helper()
	raw, err := os.ReadFile(fixturePath(name))
	must(e.t, err)
	var cm corev1.ConfigMap
	must(e.t, yaml.Unmarshal(raw, &cm))
	e.setConfigMapData(cm.Data)
}

func (e *env) setConfigMapData(data map[string]string) {
	e.t.Helper()
	cms := e.client.CoreV1().ConfigMaps(e.ns)
	cur, err := cms.Get(e.ctx, "calico-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "calico-config"}, Data: data}, metav1.CreateOptions{})
		must(e.t, err)
		return
	}
	must(e.t, err)
	cur.Data = data
	_, err = cms.Update(e.ctx, cur, metav1.UpdateOptions{})
	must(e.t, err)
}

// editConfigMap replaces text in the template.
func (e *env) editConfigMap(key, old, new string) {
	e.t.Helper()
	cur, err := e.client.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "calico-config", metav1.GetOptions{})
	must(e.t, err)
	if !strings.Contains(cur.Data[key], old) {
		e.t.Fatalf("ConfigMap key %s lacks %q", key, old)
	}
	cur.Data[key] = strings.Replace(cur.Data[key], old, new, 1)
	_, err = e.client.CoreV1().ConfigMaps(e.ns).Update(e.ctx, cur, metav1.UpdateOptions{})
	must(e.t, err)
}

// newTokenSecret creates a token Secret for calico-node and waits until the
// real token controller has populated it.
func (e *env) newTokenSecret(name string) string {
	e.t.Helper()
	harness.NewTokenSecret(e.t, e.ctx, e.client, e.ns, name)
	return name
}

// secretToken reads a token Secret's token (never printed).
func (e *env) secretToken(name string) string {
	e.t.Helper()
	s, err := e.client.CoreV1().Secrets(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	must(e.t, err)
	return string(s.Data["token"])
}

// regenerate deletes the current token Secret and creates one under a new
// name, as an operator or a cleanup job does: the seed's story.
func (e *env) regenerate(name string) {
	e.t.Helper()
	must(e.t, e.client.CoreV1().Secrets(e.ns).Delete(e.ctx, e.secret, metav1.DeleteOptions{}))
	e.secret = e.newTokenSecret(name)
}

// eventually polls check until it passes or the deadline: no sleep-and-hope.
func (e *env) eventually(timeout time.Duration, what string, check func() error) {
	e.t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	})
	if err != nil {
		e.t.Fatalf("%s: not within %s: %v", what, timeout, last)
	}
}

// args are the flags every run shares: this env's namespace, node and dirs.
// The env is a seed-era cluster (calico-config and legacy token Secrets of
// calico-node in its namespace), and the agent is its token's owner: token
// source secret and policy own, unless a test names its own.
func (e *env) args(extra ...string) []string {
	base := []string{"--kubeconfig", e.kubeconfig, "--node-name", e.node,
		"--cni-net-dir", e.net, "--state-dir", filepath.Join(e.dir, "state"), "--backup-dir", filepath.Join(e.dir, "backups"),
		"--status-file", filepath.Join(e.dir, "status.json"), "--http-addr", "127.0.0.1:0"}
	if e.bare {
		return append(base, extra...)
	}
	base = append(base, "--namespace", e.ns)
	if !slices.Contains(extra, "--token-source") && !slices.Contains(extra, "--token-file") && !slices.Contains(extra, "--token-secret") {
		base = append(base, "--token-source", "secret")
	}
	if !slices.Contains(extra, "--service-account") {
		base = append(base, "--service-account", "calico-node")
	}
	if !slices.Contains(extra, "--token-policy") {
		base = append(base, "--token-policy", "own")
	}
	return append(base, extra...)
}

// apiService is the API server's address as the kubelet gives it to pods
// (KUBERNETES_SERVICE_HOST/PORT) and the operator writes it into
// calico-node's DaemonSet: the test API server, or a benchmark's counting
// proxy in front of it (serveAPIThrough).
var apiService = func() string { return cp.Host() }

// serveAPIThrough makes host the API server's address for what is set up
// and started until the returned function restores it.
func serveAPIThrough(host string) (restore func()) {
	prev := apiService
	apiService = func() string { return host }
	return func() { apiService = prev }
}

// procEnv is the env install-cni would have: the API server the CNI plugin
// should reach; and the dial guard as the proxy for anything off loopback.
func procEnv() []string {
	host, port, _ := strings.Cut(apiService(), ":")
	return append(append(os.Environ(), guard.env()...), "KUBERNETES_SERVICE_HOST="+host, "KUBERNETES_SERVICE_PORT="+port)
}

// run runs the command to completion and checks no token reached its output.
func (e *env) run(args ...string) (int, string) {
	e.t.Helper()
	return e.runWith(procEnv(), args...)
}

// runWith runs the command with the given environment to completion and
// checks no token reached its output.
func (e *env) runWith(environ []string, args ...string) (int, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, binary, args...)
	cmd.Env = environ
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.noTokenIn(out.String())
	return code, out.String()
}

// noTokenIn fails when text holds any token this env has issued.
func (e *env) noTokenIn(text string) {
	e.t.Helper()
	secrets, err := e.client.CoreV1().Secrets(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, s := range secrets.Items {
		if tok := string(s.Data["token"]); tok != "" && strings.Contains(text, tok) {
			e.t.Fatalf("output shows the token of Secret %s", s.Name)
		}
	}
	if strings.Contains(text, "eyJhbGciOi") {
		e.t.Fatal("output shows a JWT")
	}
}

func (e *env) read(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.net, name))
	must(e.t, err)
	return string(b)
}

// whoIsKubeconfigOnDisk makes a SelfSubjectReview with the calico-kubeconfig
// the node holds, as the CNI plugin would use it.
//
// Only the token is taken from the file: the server in it may be a real
// cluster address from a fixture, and tests only ever dial loopback.
func (e *env) whoIsKubeconfigOnDisk() (string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(e.net, "calico-kubeconfig"))
	if err != nil {
		return "", err
	}
	return whoAmI(e.ctx, cp.ConfigForToken(cfg.BearerToken))
}

// whoIsToken makes a SelfSubjectReview with a bare token.
func (e *env) whoIsToken(token string) (string, error) {
	return whoAmI(e.ctx, cp.ConfigForToken(token))
}

func whoAmI(ctx context.Context, cfg *rest.Config) (string, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}
