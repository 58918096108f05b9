package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// env is one test's node: its own namespace on the control plane (holding
// calico-config, the calico-node ServiceAccount and its token Secret), its
// own Node, and a CNI directory that a containerd of its own loads.
type env struct {
	t          testing.TB
	ctx        context.Context
	client     kubernetes.Interface
	ns, node   string
	dir, net   string
	kubeconfig string // the agent's credentials: admin
	secret     string // the current token Secret
	ctd        *containerd
}

// newEnv makes the node's cluster objects from a fixture ConfigMap of
// test/testdata/fixtures and starts its containerd on the empty directory.
func newEnv(t testing.TB, fixture string) *env {
	t.Helper()
	// Every wait has its own deadline; this one bounds a benchmark.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	n := seq.Add(1)
	e := &env{t: t, ctx: ctx, client: cp.Client, ns: fmt.Sprintf("calico-rt-%d", n), node: fmt.Sprintf("rt-node-%d", n), dir: t.TempDir()}
	e.net = filepath.Join(e.dir, "net.d")
	must(t, os.MkdirAll(e.net, 0o755))
	_, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{})
	must(t, err)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.node, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
	_, err = e.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = e.client.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{})
		_ = e.client.CoreV1().Nodes().Delete(context.Background(), e.node, metav1.DeleteOptions{})
	})
	_, err = e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"}}, metav1.CreateOptions{})
	must(t, err)
	// calico-node's token is the CNI's: Calico's CNI ClusterRole, as its
	// install binds it, so the agent's credential probe finds it ok.
	must(t, harness.BindCNIAccounts(ctx, e.client, "e2e-cni-"+e.ns, e.ns))
	t.Cleanup(func() {
		_ = e.client.RbacV1().ClusterRoleBindings().Delete(context.Background(), "e2e-cni-"+e.ns, metav1.DeleteOptions{})
	})
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", fixture))
	must(t, err)
	var cm corev1.ConfigMap
	must(t, yaml.Unmarshal(raw, &cm))
	cm.ObjectMeta = metav1.ObjectMeta{Name: "calico-config"}
	_, err = e.client.CoreV1().ConfigMaps(e.ns).Create(ctx, &cm, metav1.CreateOptions{})
	must(t, err)
	e.secret = e.newTokenSecret("calico-node-token-a0001")
	e.kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, cp.Config))
	e.ctd = startContainerd(t, e.net)
	return e
}

func (e *env) eventually(timeout time.Duration, what string, check func() error) {
	e.t.Helper()
	eventually(e.t, e.ctx, timeout, what, check)
}

// newTokenSecret creates a token Secret for calico-node and waits until the
// real token controller has populated it.
func (e *env) newTokenSecret(name string) string {
	e.t.Helper()
	harness.NewTokenSecret(e.t, e.ctx, e.client, e.ns, name)
	return name
}

// regenerate deletes the token Secret and creates one under a new name, as
// an operator or a cleanup job does: the agent follows it. It returns the
// new token, for a check that it reached the disk (never printed).
func (e *env) regenerate(name string) string {
	e.t.Helper()
	must(e.t, e.client.CoreV1().Secrets(e.ns).Delete(e.ctx, e.secret, metav1.DeleteOptions{}))
	e.secret = e.newTokenSecret(name)
	s, err := e.client.CoreV1().Secrets(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	must(e.t, err)
	return string(s.Data["token"])
}

// template is the ConfigMap's cni_network_config.
func (e *env) template() string {
	e.t.Helper()
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "calico-config", metav1.GetOptions{})
	must(e.t, err)
	return cm.Data["cni_network_config"]
}

// networkName is the network a template names: its first "name", which
// Calico's templates put first (the template is not JSON before rendering).
func networkName(template string) string {
	m := regexp.MustCompile(`"name"\s*:\s*"([^"]+)"`).FindStringSubmatch(template)
	if m == nil {
		return ""
	}
	return m[1]
}

// updateConfigMap applies edit to calico-config's data.
func (e *env) updateConfigMap(edit func(data map[string]string)) {
	e.t.Helper()
	cms := e.client.CoreV1().ConfigMaps(e.ns)
	cm, err := cms.Get(e.ctx, "calico-config", metav1.GetOptions{})
	must(e.t, err)
	edit(cm.Data)
	_, err = cms.Update(e.ctx, cm, metav1.UpdateOptions{})
	must(e.t, err)
}

// args are the flags of every run: this env's namespace, node, directories,
// the seed-era token Secret of calico-node as the token's source.
func (e *env) args(extra ...string) []string {
	return append([]string{"--kubeconfig", e.kubeconfig, "--node-name", e.node, "--namespace", e.ns,
		"--cni-net-dir", e.net, "--state-dir", filepath.Join(e.dir, "state"), "--backup-dir", filepath.Join(e.dir, "backups"),
		"--http-addr", "127.0.0.1:0", "--token-source", "secret", "--service-account", "calico-node", "--token-policy", "own"}, extra...)
}

// procEnv is the env install-cni would have: the API server the CNI plugin
// should reach.
func procEnv() []string {
	host, port, _ := strings.Cut(cp.Host(), ":")
	return append(os.Environ(), "KUBERNETES_SERVICE_HOST="+host, "KUBERNETES_SERVICE_PORT="+port)
}

// run runs the binary to completion and checks no token reached its output.
func (e *env) run(args ...string) (int, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, binary, args...)
	cmd.Env = procEnv()
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

// noTokenIn fails when text holds any token this env has issued, or a JWT.
func (e *env) noTokenIn(text string) {
	e.t.Helper()
	secrets, err := e.client.CoreV1().Secrets(e.ns).List(context.Background(), metav1.ListOptions{})
	if err == nil {
		for _, s := range secrets.Items {
			if tok := string(s.Data["token"]); tok != "" && strings.Contains(text, tok) {
				e.t.Fatalf("output shows the token of Secret %s", s.Name)
			}
		}
	}
	if jwtPattern.MatchString(text) {
		e.t.Fatal("output shows a JWT")
	}
}

// fileStates are the states a drift -o json report gives the files, by
// base name.
func fileStates(report []byte) (map[string]string, error) {
	var rep struct {
		Files []struct {
			Path  string `json:"path"`
			State string `json:"state"`
		} `json:"files"`
	}
	if err := json.Unmarshal(report, &rep); err != nil {
		return nil, fmt.Errorf("not a drift report: %w", err)
	}
	states := map[string]string{}
	for _, f := range rep.Files {
		states[filepath.Base(f.Path)] = f.State
	}
	return states, nil
}

// drift is the conf's state as `calico-cni-sync drift` judges the node now.
func (e *env) drift(conf string) string {
	e.t.Helper()
	_, out := e.run(e.args("drift", "-o", "json")...)
	states, err := fileStates([]byte(out))
	if err != nil {
		e.t.Fatalf("drift: %v\n%s", err, out)
	}
	return states[conf]
}

// waitCondition waits for the node's CalicoCNIConfigDrift condition to have
// the status and reason, its message holding each fragment.
func (e *env) waitCondition(status corev1.ConditionStatus, reason string, msg ...string) {
	e.t.Helper()
	e.eventually(30*time.Second, fmt.Sprintf("condition %s/%s", status, reason), func() error {
		n, err := e.client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type != "CalicoCNIConfigDrift" {
				continue
			}
			if c.Status != status || c.Reason != reason {
				return fmt.Errorf("condition is %s/%s: %s", c.Status, c.Reason, c.Message)
			}
			for _, m := range msg {
				if !strings.Contains(c.Message, m) {
					return fmt.Errorf("message %q lacks %q", c.Message, m)
				}
			}
			e.noTokenIn(c.Message)
			return nil
		}
		return fmt.Errorf("no CalicoCNIConfigDrift condition")
	})
}

// writeByRename puts a file in the directory as an installer that cares
// does: a temporary file beside it, renamed over it.
func writeByRename(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	must(t, os.WriteFile(tmp, data, 0o644))
	must(t, os.Rename(tmp, path))
}
