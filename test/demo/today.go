package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// Today's cluster: the tigera operator's calico-system, on a node and CNI
// directory of its own. calico-node (v3.26+) refreshes the CNI token of the
// calico-cni-plugin account in calico-kubeconfig itself.
const (
	calicoNS       = "calico-system"
	cniAccount     = "calico-cni-plugin"
	operatorNode   = "operator-node"
	checkPeriod    = 3 * time.Second // the agent's --token-check-period
	watcherFixture = "test/testdata/fixtures/installs/kubeconfig-token-watch.txt"
)

func todayStory(ctx context.Context, e *env) error {
	c := e.c
	step("A tigera operator install (%s): calico-system, no calico-config, no token Secret", filepath.Base(e.o.installFixture))
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: calicoNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	netDir := filepath.Join(e.dir, "operator", "etc-cni-net.d")
	applied, err := applyInstall(ctx, e, e.o.installFixture, netDir)
	if err != nil {
		return err
	}
	fmt.Printf("   kubectl apply --server-side --force-conflicts, %d objects:\n", len(applied))
	for i := 0; i < len(applied); i += 3 {
		fmt.Printf("     %s\n", strings.Join(applied[i:min(i+3, len(applied))], ", "))
	}
	fmt.Printf("   for this machine, the DaemonSet's cni-net-dir hostPath %s -> %s\n", fixtureCNIDir, netDir)
	fmt.Printf("   and its literal KUBERNETES_SERVICE_HOST/PORT, and cni-config's k8s_api_root, %s:%s -> %s (nothing here dials a non-loopback address)\n",
		fixtureServiceHost, fixtureServicePort, e.cp.Host())
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: operatorNode, Labels: linuxNode}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	fmt.Printf("   Node %s created; no kubelet runs here, so it has no calico-node pod and the DaemonSet's template is what a restart would run\n", operatorNode)

	step("Starting the agent for %s with no input flags: it finds %s/calico-node itself", operatorNode, calicoNS)
	args := append(e.agentArgs(operatorNode, "operator"), "--token-check-period", checkPeriod.String())
	fmt.Printf("   calico-cni-sync")
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Printf(" %s %s \\\n    ", args[i], args[i+1])
	}
	fmt.Println(" --http-addr 127.0.0.1:0   # and KUBERNETES_SERVICE_HOST/PORT, as the kubelet would set them")
	agent, err := startAgent(ctx, e.o.binary, args, e.agentEnv, filepath.Join(e.dir, "operator-agent.log"))
	if err != nil {
		return err
	}
	defer agent.stop("Today's agent stopped")
	conf, kc := filepath.Join(netDir, "10-calico.conflist"), filepath.Join(netDir, "calico-kubeconfig")
	if err := waitFor(ctx, "the agent writes 10-calico.conflist and calico-kubeconfig", func() bool {
		_, err := os.Stat(conf)
		return err == nil && fileToken(kc) != ""
	}); err != nil {
		return err
	}
	show(conf)
	showKubeconfig(kc)
	if err := waitCondition(ctx, c, operatorNode, "InSync"); err != nil {
		return err
	}
	fmt.Println("   calico-cni-sync drift:")
	if out, code := drift(ctx, e, operatorNode, "operator"); code != 0 || !strings.Contains(out, "policy guard") || !strings.Contains(out, "managed by calico-node") {
		return fmt.Errorf("drift (exit %d) does not say policy guard, managed by calico-node:\n%s", code, out)
	}

	step("calico-node's token watcher refreshes calico-kubeconfig (healthy): the agent leaves it alone")
	kcWrites := []string{label("file", kc)}
	before, err := agent.metric(ctx, "calico_cni_sync_writes_total", kcWrites...)
	if err != nil {
		return err
	}
	var left string
	for i := 1; i <= 3; i++ {
		if left, err = e.cp.TokenFor(ctx, calicoNS, cniAccount, 24*time.Hour); err != nil {
			return err
		}
		passes, err := agent.metric(ctx, "calico_cni_sync_reconciles_total")
		if err != nil {
			return err
		}
		if err := writeAsTokenWatcher(e, kc, left); err != nil {
			return err
		}
		wrote := time.Now()
		// Judged: a full token-check period has passed, the agent ran a
		// pass for the write and a token check since, and its verdict on
		// the token on disk is "accepted". Or it overwrote the token.
		var now float64
		err = waitFor(ctx, "the agent judges the refreshed token", func() bool {
			if fileToken(kc) != left {
				return true
			}
			now, _ = agent.metric(ctx, "calico_cni_sync_reconciles_total")
			accepted, _ := agent.metric(ctx, "calico_cni_sync_token_accepted")
			return time.Since(wrote) > checkPeriod+500*time.Millisecond && now >= passes+2 && accepted == 1
		})
		if err != nil {
			return err
		}
		if got := fileToken(kc); got != left {
			return fmt.Errorf("the agent replaced calico-node's healthy token %s with %s", cniconf.RedactedToken(left), cniconf.RedactedToken(got))
		}
		fmt.Printf("   refresh %d: calico-node wrote %s; %s and %.0f agent passes later the file still holds it, accepted by the API server\n",
			i, cniconf.RedactedToken(left), time.Since(wrote).Round(100*time.Millisecond), now-passes)
	}
	after, err := agent.metric(ctx, "calico_cni_sync_writes_total", kcWrites...)
	if err != nil {
		return err
	}
	fmt.Printf("   calico_cni_sync_writes_total{file=%q}: %.0f before the refreshes, %.0f after\n", kc, before, after)
	if after != before {
		return fmt.Errorf("the agent wrote calico-kubeconfig %.0f times over calico-node's healthy refreshes", after-before)
	}

	step("A signing-key rotation, and calico-node's refresher has stopped on this node: the token it left is rejected")
	rotation := time.Now()
	if err := e.cp.RestartAPIServer(ctx, true); err != nil {
		return err
	}
	restart := time.Since(rotation)
	who, err := whoAmI(ctx, e, left)
	if err == nil {
		return fmt.Errorf("the token calico-node left still authenticates as %s after the rotation", who)
	}
	fmt.Printf("   API server restarted with a new signing key; the token calico-node left, %s: %v\n", cniconf.RedactedToken(left), err)
	fmt.Printf("   (the agent checks the token on disk every --token-check-period %s)\n", checkPeriod)
	var repaired string
	if err := waitWithin(ctx, 2*time.Minute, "the agent replaces the rejected token", func() bool {
		repaired = fileToken(kc)
		return repaired != "" && repaired != left
	}); err != nil {
		return err
	}
	fmt.Printf("   calico-kubeconfig holds a new token, %s, %s after the rotation began (the control plane's restart took %s of that)\n",
		cniconf.RedactedToken(repaired), time.Since(rotation).Round(100*time.Millisecond), restart.Round(100*time.Millisecond))
	ev, err := waitEvent(ctx, c, operatorNode, "TokenRepaired")
	if err != nil {
		return err
	}
	fmt.Printf("   Event on the Node: %s %s\n     %s\n", ev.Type, ev.Reason, cniconf.Redact(ev.Message, left, repaired))
	if who, err = whoAmI(ctx, e, repaired); err != nil {
		return fmt.Errorf("the token the agent wrote does not authenticate: %w", err)
	}
	fmt.Printf("   SelfSubjectReview with the new token: authenticated as %s\n", who)
	total, err := agent.metric(ctx, "calico_cni_sync_writes_total", kcWrites...)
	if err != nil {
		return err
	}
	stale, err := agent.metric(ctx, "calico_cni_sync_writes_total", append(kcWrites, label("reason", "StaleToken"))...)
	if err != nil {
		return err
	}
	fmt.Printf("   calico_cni_sync_writes_total{file=%q}: %.0f since the rotation (%.0f in all with reason StaleToken)\n", kc, total-after, stale)

	if err := rolloutStep(ctx, e, agent, conf); err != nil {
		return err
	}

	step("Wrap up: the Node condition, drift, and every node's state")
	if err := waitCondition(ctx, c, operatorNode, "InSync"); err != nil {
		return err
	}
	printEvents(ctx, c, operatorNode)
	fmt.Println("   calico-cni-sync drift (exit 0: InSync):")
	if out, code := drift(ctx, e, operatorNode, "operator"); code != 0 {
		return fmt.Errorf("drift exit %d, not InSync:\n%s", code, out)
	}
	fmt.Println("   calico-cni-sync report (the seed's node keeps its hand edit):")
	out, _ := exec.CommandContext(ctx, e.o.binary, "report", "--kubeconfig", e.kubeconfig).CombinedOutput()
	fmt.Print(indent(cniconf.Redact(string(out))))
	if !strings.Contains(string(out), operatorNode) {
		return fmt.Errorf("report does not list node %s", operatorNode)
	}
	fmt.Println("\ncalico-node's healthy refreshes were never overwritten; the token it left rejected was replaced, with an event saying why, and no restart of calico-node;")
	fmt.Println("a ConfigMap change was rolled out in waves, as every change is by default, and an annotation pushed it at once.")
	return nil
}

// drift runs `calico-cni-sync drift` for the node (its files under
// e.dir/name, as agentArgs puts them) with extra flags, prints its output
// indented, and returns it with the exit code.
func drift(ctx context.Context, e *env, node, name string, extra ...string) (string, int) {
	cmd := exec.CommandContext(ctx, e.o.binary, append(append(e.agentArgs(node, name), "drift"), extra...)...)
	cmd.Env = e.agentEnv
	b, err := cmd.CombinedOutput()
	out := cniconf.Redact(string(b))
	fmt.Print(indent(out))
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out, exit.ExitCode()
	case err != nil:
		return out + err.Error(), -1
	}
	return out, 0
}

// writeAsTokenWatcher does what calico-node's token watcher does: renders
// its kubeconfig template (no trailing newline, the CA quoted) and writes it
// with a plain truncate-and-write.
func writeAsTokenWatcher(e *env, path, token string) error {
	tmpl, err := os.ReadFile(watcherFixture)
	if err != nil {
		return err
	}
	s := strings.NewReplacer("@@SERVER@@", "https://"+e.cp.Host(),
		"@@CA_B64@@", base64.StdEncoding.EncodeToString(e.cp.CAData()), "@@TOKEN@@", token).Replace(string(tmpl))
	return os.WriteFile(path, []byte(s), 0o600)
}

// fileToken is the token in a kubeconfig, "" when there is none.
func fileToken(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var kc struct {
		Users []struct {
			User struct {
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
	}
	if yaml.Unmarshal(b, &kc) != nil || len(kc.Users) == 0 {
		return ""
	}
	return kc.Users[0].User.Token
}

var caLine = regexp.MustCompile(`(certificate-authority-data: *"?)([A-Za-z0-9+/=]{40,})`)

// showKubeconfig prints a kubeconfig with its token redacted and its CA
// abbreviated.
func showKubeconfig(path string) {
	b, _ := os.ReadFile(path)
	s := caLine.ReplaceAllStringFunc(cniconf.Redact(string(b), fileToken(path)), func(m string) string {
		sub := caLine.FindStringSubmatch(m)
		return fmt.Sprintf("%s<CA, %d bytes of base64>", sub[1], len(sub[2]))
	})
	fmt.Printf("   %s (token redacted, CA abbreviated):\n%s", path, indent(s))
}

// whoAmI asks the API server, on loopback, who the token is.
func whoAmI(ctx context.Context, e *env, token string) (string, error) {
	cs, err := kubernetes.NewForConfig(e.cp.ConfigForToken(token))
	if err != nil {
		return "", err
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("SelfSubjectReview: %s", cniconf.Redact(err.Error(), token))
	}
	return r.Status.UserInfo.Username, nil
}

// waitEvent waits for an event with the reason on the Node.
func waitEvent(ctx context.Context, c kubernetes.Interface, node, reason string) (corev1.Event, error) {
	var found corev1.Event
	err := waitFor(ctx, "event "+reason+" on Node "+node, func() bool {
		evs, err := nodeEvents(ctx, c, node)
		for _, ev := range evs {
			if ev.Reason == reason {
				found = ev
			}
		}
		return err == nil && found.Reason == reason
	})
	return found, err
}
