package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestRuntimeLoadsTheAgentsFirstWrite: containerd starts with nothing to
// load (NetworkReady=false: the control, on which the check below fails);
// after the agent's first reconcile it is NetworkReady with the network the
// ConfigMap's template names, loaded from exactly the bytes on disk.
func TestRuntimeLoadsTheAgentsFirstWrite(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	conf := filepath.Join(e.net, "10-calico.conflist")
	want := networkName(e.template())
	if want != "k8s-pod-network" {
		t.Fatalf("the fixture's template names %q", want)
	}
	before, err := e.ctd.info()
	must(t, err)
	if loads(want, conf)(before) == nil || before.NetworkReady {
		t.Fatalf("before any write the runtime already says %s", before)
	}
	t.Logf("before the agent: %s", before)
	start := time.Now()
	e.startAgent()
	e.waitCondition(corev1.ConditionFalse, "InSync")
	ri := e.ctd.waitInfo(e.ctx, "loads the agent's conflist", loads(want, conf))
	t.Logf("after the first reconcile (%s after the agent started): %s", time.Since(start).Round(time.Millisecond), ri)
}

// TestRuntimeNeverSeesAPartialWrite: through a burst of ConfigMap changes
// and token rotations (the token is in the conf of this Calico v3.0
// template, so both rewrite the file containerd loads), containerd never
// fails a reload and a concurrent status poller never sees NetworkReady=false.
// The control, in the same test and on the same observers: a plain
// truncate-and-write of the same content (os.WriteFile, as install-cni and
// calico-node write) makes containerd fail reloads.
//
// Two observers watch. containerd's log records every reload it starts (one
// per file system event but CREATE and CHMOD) and every one that failed: the
// complete record. The crictl poller samples the CRI status about every
// 10 ms; a truncate-and-write's failed reload is repaired by the reload of
// the write's own event within microseconds, so the poller almost never
// catches one: it is there for a failure that lasts.
func TestRuntimeNeverSeesAPartialWrite(t *testing.T) {
	const changes, rotations = 200, 4
	e := newEnv(t, "calico-config-v3.0-kdd.yaml")
	conf := filepath.Join(e.net, "10-calico.conflist")
	a := e.startAgent()
	e.waitCondition(corev1.ConditionFalse, "InSync")
	e.ctd.waitInfo(e.ctx, "loads Calico's conflist", loads("k8s-pod-network", conf))
	fw := newFileWaiter(t, e.net, "10-calico.conflist")

	writes0 := a.metric("calico_cni_sync_writes_total", "10-calico.conflist")
	mark, stopPoll := e.ctd.mark(), e.ctd.poll()
	start := time.Now()
	mtu := "1500"
	for i := range changes {
		if i%(changes/rotations) == changes/rotations/2 {
			tok := e.regenerate(fmt.Sprintf("calico-node-token-r%04d", i))
			fw.wait("the new token", func(s string) bool { return strings.Contains(s, tok) })
		}
		next := strconv.Itoa(1000 + i)
		e.updateConfigMap(func(d map[string]string) {
			d["cni_network_config"] = strings.Replace(d["cni_network_config"], `"mtu": `+mtu+`,`, `"mtu": `+next+`,`, 1)
		})
		mtu = next
		fw.wait("mtu "+mtu, func(s string) bool { return strings.Contains(s, `"mtu": `+mtu+`,`) })
	}
	burst := time.Since(start)
	polled := stopPoll()
	reloads := e.ctd.reloadsSince(mark)
	writes := int(a.metric("calico_cni_sync_writes_total", "10-calico.conflist") - writes0)
	broken, sample := failed(reloads)
	t.Logf("agent: %d writes of the conflist in %s; containerd: %d reloads, %d failed %v; crictl poller: %s",
		writes, burst.Round(time.Millisecond), len(reloads), broken, sample, polled)
	if writes < changes {
		t.Errorf("%d writes, want at least %d (one per ConfigMap change)", writes, changes)
	}
	// Every write of the agent makes events containerd reloads on: fewer
	// reloads than writes would mean the log observer was not listening.
	if len(reloads) < writes {
		t.Errorf("containerd logged %d reloads for %d writes: its log is not being read", len(reloads), writes)
	}
	if broken > 0 {
		t.Errorf("containerd failed %d of %d reloads during the agent's writes: %v", broken, len(reloads), sample)
	}
	if polled.notReady > 0 || polled.failedLoad > 0 || polled.errs > 0 {
		t.Errorf("the poller saw a broken runtime during the agent's writes: %s; first: %s", polled, polled.firstBad)
	}
	if polled.polls < 20 {
		t.Errorf("the poller made only %d polls in %s", polled.polls, burst)
	}
	e.ctd.waitInfo(e.ctx, "loads the last write", loads("k8s-pod-network", conf))

	// The control: the same directory, runtime and observers; the agent
	// stopped; the same file rewritten in place as often. One write every
	// 10 ms, faster than the agent's (its API client's rate limit paces
	// it): containerd is idle again long before the next write (a reload
	// takes well under a millisecond), so each write is judged on its own.
	a.stop()
	final, err := os.ReadFile(conf)
	must(t, err)
	const controlWrites, pace = 200, 10 * time.Millisecond
	mark, stopPoll = e.ctd.mark(), e.ctd.poll()
	tick := time.NewTicker(pace)
	for i := range controlWrites {
		<-tick.C
		body := strings.Replace(string(final), `"mtu": `+mtu+`,`, `"mtu": `+strconv.Itoa(5000+i)+`,`, 1)
		must(t, os.WriteFile(conf, []byte(body), 0o600))
	}
	tick.Stop()
	polledControl := stopPoll()
	reloads = e.ctd.reloadsSince(mark)
	brokenControl, sample := failed(reloads)
	t.Logf("control, truncate-and-write: %d writes one every %s; containerd: %d reloads, %d failed %v; crictl poller: %s",
		controlWrites, pace.Round(time.Microsecond), len(reloads), brokenControl, sample, polledControl)
	if brokenControl+polledControl.notReady+polledControl.failedLoad == 0 {
		t.Errorf("no observer caught a broken load in %d truncate-and-writes: the observers are blind, so the agent's zero proves nothing", controlWrites)
	}
	writeByRename(t, conf, final)
	e.ctd.waitInfo(e.ctx, "back to a whole file", loads("k8s-pod-network", conf))
}

// TestRuntimeAgreesWithShadowed: the agent's Shadowed is the runtime's
// choice. Another valid config sorting first is the one containerd loads,
// and the agent (its Node condition and drift) says Shadowed; when it goes,
// both are back to Calico's. A multus config, which sorts first and
// delegates to Calico's, is what containerd loads, and the agent does not
// call that Shadowed.
func TestRuntimeAgreesWithShadowed(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	calico := filepath.Join(e.net, "10-calico.conflist")
	a := e.startAgent()
	e.waitCondition(corev1.ConditionFalse, "InSync")
	e.ctd.waitInfo(e.ctx, "loads Calico's", loads("k8s-pod-network", calico))
	chained := filepath.Join("..", "..", "cniconf", "testdata", "chained")

	bridge := filepath.Join(e.net, "05-bridge.conflist")
	data, err := os.ReadFile(filepath.Join(chained, "05-bridge.conflist"))
	must(t, err)
	writeByRename(t, bridge, data)
	ri := e.ctd.waitInfo(e.ctx, "loads the bridge config sorting first", loads("bridge", bridge))
	e.waitCondition(corev1.ConditionTrue, "Shadowed", "05-bridge.conflist")
	if got := e.drift("10-calico.conflist"); got != "Shadowed" {
		t.Errorf("runtime says %s; drift says %s, want Shadowed", ri, got)
	}

	must(t, os.Remove(bridge))
	e.ctd.waitInfo(e.ctx, "back to Calico's", loads("k8s-pod-network", calico))
	e.waitCondition(corev1.ConditionFalse, "InSync")
	if got := e.drift("10-calico.conflist"); got != "InSync" {
		t.Errorf("bridge config gone: drift says %s, want InSync", got)
	}

	multus := filepath.Join(e.net, "00-multus.conf")
	data, err = os.ReadFile(filepath.Join(chained, "00-multus.conf"))
	must(t, err)
	// The agent is idle: its next reconcile is the one 00-multus.conf's
	// event triggers.
	before, _ := a.verdict(calico)
	writeByRename(t, multus, data)
	ri = e.ctd.waitInfo(e.ctx, "loads multus", loads("multus-cni-network", multus))
	if got := a.verdictAfter(calico, before); got != "InSync" {
		t.Errorf("runtime says %s; the agent, after seeing 00-multus.conf, says %s, want InSync", ri, got)
	}
	e.waitCondition(corev1.ConditionFalse, "InSync")
	if got := e.drift("10-calico.conflist"); got != "InSync" {
		t.Errorf("runtime says %s; drift says %s, want InSync", ri, got)
	}
}

// TestRuntimeRefusesAListInAConfFile: containerd parses a .conf file as a
// single plugin's config, so Calico's list body there is refused by the
// runtime itself (NetworkReady=false, the file named in the load error),
// while the same bytes as a .conflist load (the control). That is why the
// agent refuses to write a list under --cni-conf-name 10-calico.conf, and
// writes nothing at all.
func TestRuntimeRefusesAListInAConfFile(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	conflist := filepath.Join(e.net, "10-calico.conflist")
	if code, out := e.run(e.args("--once")...); code != 0 {
		t.Fatalf("--once: exit %d\n%s", code, out)
	}
	body, err := os.ReadFile(conflist)
	must(t, err)
	e.ctd.waitInfo(e.ctx, "loads the list as a .conflist", loads("k8s-pod-network", conflist))

	must(t, os.Remove(conflist))
	conf := filepath.Join(e.net, "10-calico.conf")
	mark := e.ctd.mark()
	writeByRename(t, conf, body)
	ri := e.ctd.waitInfo(e.ctx, "refuses the list in a .conf", func(ri runtimeInfo) error {
		if ri.NetworkReady || ri.Network != "" || !strings.Contains(ri.LastLoad, "10-calico.conf:") {
			return fmt.Errorf("want NetworkReady=false and a load error naming 10-calico.conf")
		}
		return nil
	})
	t.Logf("a list body in 10-calico.conf: %s", ri)
	if n, sample := failed(e.ctd.reloadsSince(mark)); n == 0 {
		t.Errorf("containerd logged no failed reload for the list in a .conf")
	} else {
		t.Logf("containerd's log: %v", sample)
	}
	must(t, os.Remove(conf))

	code, out := e.run(e.args("--once", "--cni-conf-name", "10-calico.conf")...)
	if code != 2 || !strings.Contains(out, `"10-calico.conf" is a .conf file but the template renders a config list`) {
		t.Fatalf("--once --cni-conf-name 10-calico.conf with a list template: exit %d, want 2 and the refusal\n%s", code, out)
	}
	entries, err := os.ReadDir(e.net)
	must(t, err)
	for _, en := range entries {
		if en.Name() != "calico-kubeconfig" {
			t.Errorf("the refused run left %s in the directory", en.Name())
		}
	}
}
