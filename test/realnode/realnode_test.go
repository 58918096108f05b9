package realnode

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSeedStoryManifestV332(t *testing.T) { seedStory(t, manifestV332) }
func TestSeedStoryOperatorV332(t *testing.T) { seedStory(t, operatorV332) }
func TestSeedStoryV26(t *testing.T)          { seedStory(t, manifestV26) }

// seedStory deploys the agent from its image beside a Calico install on the
// real node and walks through what users see: the node becomes Ready when
// the agent writes the files, pods get sandboxes through the Calico plugin,
// a stale CNI token leaves pods stuck until the agent comes back and
// repairs it, hand edits are reported and kept (or, with enforce, backed up
// and restored), and rolling or deleting the agent leaves the files alone.
func seedStory(t *testing.T, inst install) {
	c := newCluster(t)
	agentNS := "kube-system"

	// Without a CNI configuration the node is NotReady.
	c.waitFor("node NotReady for want of a CNI config", time.Minute, func(ctx context.Context) (bool, error) {
		node, err := c.cp.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionFalse && strings.Contains(cond.Message, "cni"), fmt.Errorf("%s: %s", cond.Status, cond.Message)
			}
		}
		return false, nil
	})
	tag := inst.setUp(c)
	deployed := time.Now()
	c.mustKubectl("apply", "--server-side", "-k", filepath.Join(c.node.repo, inst.manifests))
	pod := c.agentPod(agentNS, 3*time.Minute)
	t.Logf("figure: agent pod start -> Ready (first pass reported) %v", time.Since(deployed).Round(time.Millisecond))
	if got := pod.Spec.Containers[0].Image; got != tag {
		t.Errorf("the agent runs image %s, want %s", got, tag)
	}
	if pod.Spec.ServiceAccountName != "calico-cni-sync" {
		t.Errorf("the agent runs as %s", pod.Spec.ServiceAccountName)
	}
	projected := false
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-") {
			projected = true
		}
	}
	if !projected {
		t.Error("the agent's pod has no projected service-account token")
	}
	// Its Lease, written with its Pod-bound token, which names the node:
	// the manifests' lease guard lets it write that Lease and no other.
	c.waitFor("the agent's Lease", time.Minute, func(ctx context.Context) (bool, error) {
		l, err := c.cp.Client.CoordinationV1().Leases(agentNS).Get(ctx, "calico-cni-sync-"+Name, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil, err
	})
	c.waitFor("node Ready", time.Minute, func(ctx context.Context) (bool, error) { return c.node.Ready(ctx) })
	c.waitCondition("InSync", time.Minute)
	c.checkFiles(inst)

	started := time.Now()
	c.waitPodRunning(c.testPod("first"), 2*time.Minute)
	t.Logf("figure: pod create -> Running %v", time.Since(started).Round(time.Millisecond))

	// The seed's story: the agent away, the CNI token goes bad.
	c.mustKubectl("-n", agentNS, "delete", "daemonset", "calico-cni-sync", "--wait")
	c.waitFor("the agent's pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		pods, err := c.cp.Client.CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
		return err == nil && len(pods.Items) == 0, err
	})
	inst.breakToken(c)
	broken := time.Now()
	stuck := c.testPod("stuck")
	msg := c.sandboxFailure(stuck, 2*time.Minute)
	if !strings.Contains(msg, `plugin type="calico"`) || !strings.Contains(msg, inst.unauthorized) {
		t.Fatalf("FailedCreatePodSandBox says %q, want Calico's %q", msg, inst.unauthorized)
	}
	c.expectStuck(stuck)

	c.mustKubectl("apply", "--server-side", "-k", filepath.Join(c.node.repo, inst.manifests))
	c.agentPod(agentNS, 3*time.Minute)
	if inst.guard {
		ev := c.waitNodeEvent("TokenRepaired", 2*time.Minute)
		t.Logf("TokenRepaired: %s", ev.Message)
	} else {
		c.waitNodeEvent("TokenRotated", 2*time.Minute)
	}
	c.waitPodRunning(stuck, 3*time.Minute)
	t.Logf("figure: token rejected -> stuck pod Running %v", time.Since(broken).Round(time.Millisecond))

	c.handEdits(inst, agentNS)
	c.rollAndDelete(inst, agentNS, tag)
}

// checkFiles checks the files are install-cni's for this node and install.
func (c *cluster) checkFiles(inst install) {
	t := c.t
	t.Helper()
	conf := readFile(t, inst.conf)
	fi, err := os.Stat(filepath.Join(CNIDir, inst.conf))
	if err != nil {
		t.Fatal(err)
	}
	typ := jsonField(t, conf, "type")
	if inst.conf == "10-calico.conflist" {
		typ = jsonField(t, conf, "plugins", "0", "type")
		if got := jsonField(t, conf, "plugins", "0", "kubernetes", "kubeconfig"); got != "/etc/cni/net.d/calico-kubeconfig" {
			t.Errorf("kubeconfig path %v", got)
		}
		if got := jsonField(t, conf, "plugins", "0", "nodename"); got != nil && got != Name {
			t.Errorf("nodename %v, want %s", got, Name)
		}
	}
	if typ != "calico" {
		t.Errorf("%s: plugin type %v", inst.conf, typ)
	}
	kc := string(readFile(t, "calico-kubeconfig"))
	if !strings.Contains(kc, "server: https://10.0.0.1:443") {
		t.Errorf("calico-kubeconfig's server is not the kubernetes Service:\n%s", redact(kc))
	}
	if inst.conf == "10-calico.conf" {
		t.Logf("%s mode %v", inst.conf, fi.Mode())
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s holds the token and has mode %v", inst.conf, fi.Mode().Perm())
		}
	}
	// Byte for byte what install-cni would write for this node now, as
	// render (golden-tested against install-cni) computes it from the same
	// cluster, with the address the kubelet gives pods.
	render := exec.CommandContext(c.ctx, c.agentBinary(), "render", "-o", "json", "--kubeconfig", c.cp.AdminKubeconfig(), "--node-name", Name)
	render.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST="+controlplane.ServiceIP, "KUBERNETES_SERVICE_PORT=443")
	out, err := render.Output()
	if err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	want, ok := renderedFile(string(out), filepath.Join(CNIDir, inst.conf))
	if !ok {
		t.Fatalf("render printed no %s:\n%s", inst.conf, out)
	}
	if got := cniconf.Redact(string(conf)); got != want {
		t.Errorf("%s is not what install-cni would write:\n got: %s\nwant: %s", inst.conf, got, want)
	}
	subject := tokenSubject(t, inst)
	ns, name, _ := strings.Cut(inst.account, "/")
	if want := "system:serviceaccount:" + ns + ":" + name; subject != want {
		t.Errorf("the CNI token's subject is %s, want %s", subject, want)
	}
}

// renderedFile is the content render -o json gave for path.
func renderedFile(out, path string) (string, bool) {
	var doc struct {
		Files []struct{ Path, Content string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "", false
	}
	for _, f := range doc.Files {
		if f.Path == path {
			return f.Content, true
		}
	}
	return "", false
}

// tokenSubject is the sub claim of the token the plugin will use.
func tokenSubject(t *testing.T, inst install) string {
	t.Helper()
	var token string
	if inst.conf == "10-calico.conf" {
		token, _ = jsonField(t, readFile(t, inst.conf), "policy", "k8s_auth_token").(string)
	} else {
		for _, line := range strings.Split(string(readFile(t, "calico-kubeconfig")), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "token: "); ok {
				token = strings.Trim(v, `"`)
			}
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("the CNI token is not a JWT")
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Sub
}

// expectStuck runs report --stuck, as an operator would, and expects the
// pod as cniUnauthorized.
func (c *cluster) expectStuck(pod string) {
	c.t.Helper()
	var last string
	c.waitFor("report --stuck lists "+pod, time.Minute, func(ctx context.Context) (bool, error) {
		cmd := exec.CommandContext(ctx, c.agentBinary(), "report", "--stuck", "-o", "json", "--kubeconfig", c.cp.AdminKubeconfig())
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
			return false, fmt.Errorf("report --stuck: %v: %s", err, out)
		}
		last = string(out)
		var rep struct {
			Stuck []struct{ Namespace, Pod, Why string }
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			return false, err
		}
		for _, s := range rep.Stuck {
			if s.Pod == pod && s.Why == "cniUnauthorized" {
				return true, nil
			}
		}
		return false, fmt.Errorf("not listed: %s", out)
	})
	if strings.Contains(last, "eyJ") {
		c.t.Errorf("report --stuck printed a token: %s", last)
	}
}

// handEdits: an edit on the node is reported and kept, and pods still start;
// under --on-drift=enforce it is backed up and restored.
func (c *cluster) handEdits(inst install, agentNS string) {
	t := c.t
	t.Helper()
	path := filepath.Join(CNIDir, inst.conf)
	var doc map[string]any
	if err := json.Unmarshal(readFile(t, inst.conf), &doc); err != nil {
		t.Fatal(err)
	}
	plugin := doc
	if plugins, ok := doc["plugins"].([]any); ok {
		plugin = plugins[0].(map[string]any)
	}
	plugin["log_level"] = "debug-by-hand"
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	edited := string(b)
	if err := os.WriteFile(path+".edit", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".edit", path); err != nil { // as an editor saves
		t.Fatal(err)
	}
	c.waitCondition("Drifted", time.Minute)
	c.waitNodeEvent("DriftDetected", time.Minute)
	if got := string(readFile(t, inst.conf)); got != edited {
		t.Errorf("the hand edit was not kept")
	}
	c.waitPodRunning(c.testPod("after-edit"), 2*time.Minute)

	c.mustKubectl("-n", agentNS, "patch", "daemonset", "calico-cni-sync", "--type", "json", "-p",
		`[{"op":"add","path":"/spec/template/spec/containers/0/args","value":["--on-drift=enforce"]}]`)
	c.waitNodeEvent("ConfigRestored", 3*time.Minute)
	c.waitCondition("InSync", time.Minute)
	if got := string(readFile(t, inst.conf)); got == edited {
		t.Error("enforce did not restore the file")
	}
	backups, _ := filepath.Glob("/var/lib/calico-cni-sync/backups/*")
	found := false
	for _, b := range backups {
		if data, err := os.ReadFile(b); err == nil && string(data) == edited {
			found = true
		}
	}
	if !found {
		t.Errorf("no backup holds the hand edit (backups: %v)", backups)
	}
}

// rollAndDelete rolls the agent to another image and deletes it: the files
// stay, and pods keep starting during and after.
func (c *cluster) rollAndDelete(inst install, agentNS, tag string) {
	t := c.t
	t.Helper()
	conf := readFile(t, inst.conf)
	next := tag + "-next"
	if err := c.node.ctr("images", "tag", "docker.io/library/"+tag, "docker.io/library/"+next); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl("-n", agentNS, "set", "image", "daemonset/calico-cni-sync", "calico-cni-sync="+next)
	during := c.testPod("during-rollout")
	c.mustKubectl("-n", agentNS, "rollout", "status", "daemonset/calico-cni-sync", "--timeout", "3m")
	if got := c.agentPod(agentNS, time.Minute).Spec.Containers[0].Image; got != next {
		t.Errorf("after the rollout the agent runs %s, want %s", got, next)
	}
	c.waitPodRunning(during, 2*time.Minute)
	c.waitPodRunning(c.testPod("after-rollout"), 2*time.Minute)

	c.mustKubectl("delete", "--wait", "-k", filepath.Join(c.node.repo, inst.manifests))
	c.waitFor("the agent's pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		pods, err := c.cp.Client.CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=calico-cni-sync"})
		return err == nil && len(pods.Items) == 0, err
	})
	if got := readFile(t, inst.conf); string(got) != string(conf) {
		t.Error("deleting the agent changed the CNI config")
	}
	c.waitPodRunning(c.testPod("after-delete"), 2*time.Minute)
}

func redact(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "eyJ"); i >= 0 {
			line = line[:i] + "<token>"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
