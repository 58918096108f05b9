package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentFollowsConfigMapAndToken: a ConfigMap edit reaches the file
// without a restart, and the token follows its Secret through repeated
// delete-and-regenerate under new names (the seed).
func TestAgentFollowsConfigMapAndToken(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.editConfigMap("veth_mtu", "0", "1440")
	e.waitFile(e.net, "10-calico.conflist", "new MTU", func(s string) bool { return strings.Contains(s, `"mtu": 1440,`) })
	e.waitEvent(e.node, "ConfigWritten", "it was Outdated")
	for i, name := range []string{"calico-node-token-b0002", "calico-node-token-c0003", "calico-node-token-d0004"} {
		e.regenerate(name)
		tok := e.secretToken(name)
		e.waitFile(e.net, "calico-kubeconfig", "token of "+name, func(s string) bool { return strings.Contains(s, tok) })
		who, err := e.whoIsKubeconfigOnDisk()
		if err != nil || !strings.HasSuffix(who, ":calico-node") {
			t.Fatalf("regeneration %d: kubeconfig on disk is %q (%v)", i, who, err)
		}
	}
	e.waitEvent(e.node, "TokenRotated", "Secret calico-node-token-d0004")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if a.metric("calico_cni_sync_writes_total", `reason="StaleToken"`) < 3 {
		t.Error("token rotations not counted")
	}
	// Nothing on this path deserves a warning, client-go's included.
	for line := range strings.Lines(a.Output()) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "Warning") {
			t.Errorf("warning logged on the happy path: %s", line)
		}
	}
}

// TestAgentReportPolicy: direct edits by rename (sed -i), by truncate and
// write, and a delete are all seen; the edit is kept, reported, and still
// gets the new token.
func TestAgentReportPolicy(t *testing.T) {
	e := newEnv(t, "calico-config-v2.6-etcd.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	conf := filepath.Join(e.net, "10-calico.conf")

	// sed -i writes a new file and renames it over the old one.
	if out, err := exec.Command("sed", "-i", `s/"mtu": 1500/"mtu": 1400/`, conf).CombinedOutput(); err != nil {
		t.Fatalf("sed: %v %s", err, out)
	}
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "10-calico.conf", "mtu", "overwritten from the ConfigMap when calico-node restarts")
	e.waitEvent(e.node, "DriftDetected", "(mtu)")

	// A new token: the edit stays, the token inside it is replaced.
	e.regenerate("calico-node-token-b0002")
	tok := e.secretToken(e.secret)
	e.waitFile(e.net, "10-calico.conf", "new token inside the edit", func(s string) bool {
		return strings.Contains(s, tok) && strings.Contains(s, `"mtu": 1400`)
	})
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "mtu")

	// Truncate and write in place, as an editor saving over the file does.
	content := strings.Replace(e.read("10-calico.conf"), `"log_level": "info"`, `"log_level": "debug"`, 1)
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	_, err = f.WriteString(content)
	must(t, err)
	must(t, f.Close())
	e.waitCondition(e.node, corev1.ConditionTrue, "Drifted", "log_level")

	// Delete: Missing, written back from the ConfigMap.
	must(t, os.Remove(conf))
	e.waitFile(e.net, "10-calico.conf", "restored after delete", func(s string) bool { return strings.Contains(s, `"mtu": 1500`) })
	e.waitEvent(e.node, "ConfigWritten", "it was Missing")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
}

// TestAgentEnforcePolicy: a hand edit is backed up and restored.
func TestAgentEnforcePolicy(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	e.startAgent("--on-drift", "enforce")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	path := filepath.Join(e.net, "10-calico.conflist")
	must(t, os.WriteFile(path+".tmp", []byte(strings.Replace(e.read("10-calico.conflist"), `"mtu": 0`, `"mtu": 9000`, 1)), 0o644))
	must(t, os.Rename(path+".tmp", path))
	ev := e.waitEvent(e.node, "ConfigRestored", "plugins.0.mtu")
	e.waitFile(e.net, "10-calico.conflist", "restored", func(s string) bool { return strings.Contains(s, `"mtu": 0`) })
	backups, _ := filepath.Glob(filepath.Join(e.dir, "backups-"+e.node, "10-calico.conflist.*.bak"))
	if len(backups) != 1 {
		t.Fatalf("%d backups, want 1 (event: %s)", len(backups), ev.Message)
	}
	if b, _ := os.ReadFile(backups[0]); !strings.Contains(string(b), `"mtu": 9000`) {
		t.Fatal("the backup does not hold the edit")
	}
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if len(e.events(e.node, "DriftDetected")) != 1 {
		t.Errorf("want exactly one DriftDetected event")
	}
}

// TestAgentCorruptFileAndInvalidConfigMap: a corrupt file is backed up and
// replaced; an invalid ConfigMap leaves the file untouched and is reported.
func TestAgentCorruptFileAndInvalidConfigMap(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	must(t, os.WriteFile(filepath.Join(e.net, "10-calico.conflist"), []byte(`{"name": "k8s-pod-net`), 0o644))
	e.waitEvent(e.node, "ConfigWritten", "it was Corrupt")
	e.waitFile(e.net, "10-calico.conflist", "rewritten", func(s string) bool { return strings.HasSuffix(s, "]\n}") })
	if b, _ := filepath.Glob(filepath.Join(e.dir, "backups-"+e.node, "*.bak")); len(b) != 1 {
		t.Fatalf("%d backups of the corrupt file, want 1", len(b))
	}

	before := e.read("10-calico.conflist")
	e.editConfigMap("cni_network_config", `"cniVersion": "1.0.0",`, `"cniVersion": "1.0.0",,`)
	e.waitEvent(e.node, "RenderFailed", "not a JSON object")
	e.waitCondition(e.node, corev1.ConditionUnknown, "Error", "not a JSON object")
	if e.read("10-calico.conflist") != before {
		t.Fatal("an invalid ConfigMap changed the file")
	}
	e.editConfigMap("cni_network_config", `"cniVersion": "1.0.0",,`, `"cniVersion": "1.0.0",`)
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
}

// TestThreeAgents: three nodes at once, each with its own directory and
// condition.
func TestThreeAgents(t *testing.T) {
	e := newEnv(t, "calico-config-v3.24.yaml")
	nodes := []string{e.node, e.addNode("b"), e.addNode("c")}
	nets := map[string]string{}
	for _, n := range nodes {
		nets[n] = filepath.Join(e.dir, n, "net.d")
		must(t, os.MkdirAll(nets[n], 0o755))
		e.startAgentFor(n, nets[n])
	}
	for _, n := range nodes {
		e.waitCondition(n, corev1.ConditionFalse, "InSync")
	}
	victim := nodes[1]
	p := filepath.Join(nets[victim], "10-calico.conflist")
	b, _ := os.ReadFile(p)
	must(t, os.WriteFile(p, []byte(strings.Replace(string(b), `"type": "bandwidth"`, `"type": "bandwidth", "x": 1`, 1)), 0o644))
	e.waitCondition(victim, corev1.ConditionTrue, "Drifted", "plugins.2.x")
	for _, n := range []string{nodes[0], nodes[2]} {
		if c, err := e.condition(n); err != nil || c.Status != corev1.ConditionFalse {
			t.Errorf("node %s: %v %v", n, c, err)
		}
	}
	e.editConfigMap("veth_mtu", "0", "1450")
	for _, n := range nodes {
		want := `"mtu": 1450,`
		if n == victim {
			continue // a drifted file keeps its edit
		}
		e.waitFile(nets[n], "10-calico.conflist", "new MTU", func(s string) bool { return strings.Contains(s, want) })
	}
}

// TestAnotherWriterNoLoop: another writer (install-cni when calico-node
// restarts) replaces the kubeconfig with a valid one carrying a different
// token. The agent puts its own back once, and does not write again.
func TestAnotherWriterNoLoop(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	ours := e.secretToken(e.secret)
	theirs, err := cp.TokenFor(e.ctx, e.ns, "calico-node", time.Hour)
	must(t, err)
	writesBefore := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig")
	path := filepath.Join(e.net, "calico-kubeconfig")
	must(t, os.WriteFile(path+".new", []byte(strings.Replace(e.read("calico-kubeconfig"), ours, theirs, 1)), 0o600))
	must(t, os.Rename(path+".new", path))
	e.waitFile(e.net, "calico-kubeconfig", "our token back", func(s string) bool { return strings.Contains(s, ours) })
	e.eventually(10*time.Second, "one write counted", func() error {
		if got := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig"); got != writesBefore+1 {
			return errorf("writes %v, want %v", got, writesBefore+1)
		}
		return nil
	})
	// Make the agent look again (a chmod is a file event) and prove it
	// reconciled without writing.
	reconciles := a.metric("calico_cni_sync_reconciles_total")
	must(t, os.Chmod(path, 0o600))
	e.eventually(10*time.Second, "another reconcile", func() error {
		if a.metric("calico_cni_sync_reconciles_total") <= reconciles {
			return errorf("no reconcile yet")
		}
		return nil
	})
	if got := a.metric("calico_cni_sync_writes_total", "calico-kubeconfig"); got != writesBefore+1 {
		t.Fatalf("writes went on: %v, want %v", got, writesBefore+1)
	}
}

// TestAgentReadyWhenAPassIsReported: started before its ConfigMap exists,
// the agent reports Error (condition, RenderFailed, an error in the
// metrics), writes nothing, and is ready: a pass completed and was
// reported. Once the ConfigMap appears it writes the files.
func TestAgentReadyWhenAPassIsReported(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	must(t, e.client.CoreV1().ConfigMaps(e.ns).Delete(e.ctx, "calico-config", metav1.DeleteOptions{}))
	a := e.launchAgent(e.node, e.net)
	e.waitCondition(e.node, corev1.ConditionUnknown, "Error", "ConfigMap "+e.ns+"/calico-config not found")
	// An input error is reported (condition, RenderFailed) and must not
	// stall a rollout: ready, with the error shown, and retried.
	e.eventually(10*time.Second, "ready with its inputs in Error", func() error { return a.probe("/readyz") })
	e.waitEvent(e.node, "RenderFailed", "calico-config not found")
	if a.metric("calico_cni_sync_reconciles_total", `result="success"`) != 0 {
		t.Error("a pass in Error counted as a success")
	}
	if err := a.probe("/healthz"); err != nil {
		t.Fatalf("missing inputs made the agent unhealthy: %v", err)
	}
	if entries, _ := os.ReadDir(e.net); len(entries) != 0 {
		t.Fatalf("%d files written without a ConfigMap", len(entries))
	}
	e.applyFixture("calico-config-v3.32.yaml")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
}

// TestAgentSurvivesTheDirectoryBeingRemoved: the CNI directory removed
// altogether is recreated with its files, and the watch is back: a later
// hand edit is still seen.
func TestAgentSurvivesTheDirectoryBeingRemoved(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	// Moved away, then removed: the agent may put files back while a plain
	// rm -rf is still emptying the directory, and then rmdir fails.
	gone := e.net + ".removed"
	must(t, os.Rename(e.net, gone))
	must(t, os.RemoveAll(gone))
	e.waitFile(e.net, "10-calico.conflist", "recreated", func(s string) bool { return strings.Contains(s, `"mtu": 0,`) })
	e.waitFile(e.net, "calico-kubeconfig", "recreated", func(s string) bool { return strings.Contains(s, "calico-context") })
	path := filepath.Join(e.net, "10-calico.conflist")
	e.eventually(10*time.Second, "a hand edit seen after the directory came back", func() error {
		must(t, os.WriteFile(path, []byte(strings.Replace(e.read("10-calico.conflist"), `"mtu": 0,`, `"mtu": 1234,`, 1)), 0o600))
		c, err := e.condition(e.node)
		if err != nil || c.Reason != "Drifted" {
			return errorf("condition %v %v", c, err)
		}
		return nil
	})
}
