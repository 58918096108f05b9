package e2e

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// operatorNodeEnv is an env on a tigera operator install (calico-system),
// with this node's calico-node Pod as the DaemonSet controller would create
// it, and an agent run as the manifests run it: no input flags.
func operatorNodeEnv(b *testing.B) *env {
	e := newEnv(b, "calico-config-v3.32.yaml")
	e.bare = true
	calicoSystem(b, e.ctx)
	e.installCalico("operator-v3.32.yaml")
	ds, err := cp.Client.AppsV1().DaemonSets("calico-system").Get(e.ctx, "calico-node", metav1.GetOptions{})
	must(b, err)
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-node-" + e.node, Namespace: "calico-system", Labels: ds.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: &yes}}},
		Spec: *ds.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = e.node
	_, err = cp.Client.CoreV1().Pods("calico-system").Create(e.ctx, pod, metav1.CreateOptions{})
	must(b, err)
	b.Cleanup(func() {
		_ = cp.Client.CoreV1().Pods("calico-system").Delete(e.ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	return e
}

// idleScale: the idle benchmark runs the agent's periods this many times
// shorter than the defaults, over an hour as many times shorter.
var idleScale = flag.Int("idle-scale", 30, "BenchmarkIdleAgent runs the default periods and an hour this many times shorter")

// BenchmarkIdleAgent: what an idle agent sends, on each install of today's
// Calico, run as the DaemonSet runs it. Its requests are counted by kind by
// a proxy between it and the API server, over a window of an hour with the
// periods it runs at (a pass every 5 minutes: the resync and its Lease
// renewal; a token check every 10) both scaled down by -idle-scale, so the
// counts are per hour at the default periods once multiplied back.
func BenchmarkIdleAgent(b *testing.B) {
	for _, in := range changeInstalls {
		if in.name == "v2.6-configmap" {
			continue // the legacy install's token is a Secret the agent watches: nothing periodic but the same
		}
		b.Run(in.name, func(b *testing.B) { benchIdle(b, in) })
	}
}

func benchIdle(b *testing.B, in changeInstall) {
	scale := time.Duration(*idleScale)
	resync, check, window := 5*time.Minute/scale, 10*time.Minute/scale, time.Hour/scale
	proxy := harness.NewProxy(b, cp.Config, cp.Host())
	// The proxy is the cluster's API address too, as the kubernetes
	// Service is on a cluster: calico-kubeconfig names it, with the CA the
	// agent has for it, so the plugin's request the agent's credential
	// probe makes is counted with the agent's own.
	restore := serveAPIThrough(proxy.Host())
	defer restore()
	e := in.setup(b)
	kc := filepath.Join(e.dir, "proxied.kubeconfig")
	must(b, cp.WriteKubeconfig(kc, proxy.Config()))
	e.kubeconfig = kc
	a := e.startShippedAgent("--resync-period", resync.String(), "--token-check-period", check.String())
	// The window starts once start-up traffic is over: no request for a
	// whole second.
	seen, stableSince := "", time.Now()
	e.eventually(30*time.Second, "start-up traffic over", func() error {
		counts, _ := proxy.Snapshot()
		if now := fmt.Sprint(counts); now != seen {
			seen, stableSince = now, time.Now()
		}
		if time.Since(stableSince) < time.Second {
			return errorf("requests still coming")
		}
		return nil
	})
	start, watchesOpen := proxy.Snapshot()
	pid := a.Cmd.Process.Pid
	cpu0 := cpuTime(b, pid)
	b.ResetTimer()
	var maxRSS, maxAnon int64
	end := time.After(window)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for open := true; open; {
		rss, anon := rssKiB(b, pid)
		maxRSS, maxAnon = max(maxRSS, rss), max(maxAnon, anon)
		select {
		case <-end:
			open = false
		case <-tick.C:
		}
	}
	b.StopTimer()
	cpu := cpuTime(b, pid) - cpu0
	after, watchesAfter := proxy.Snapshot()
	var kinds []string
	total := 0
	for k, v := range after {
		if d := v - start[k]; d > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, d))
			total += d
		}
	}
	sort.Strings(kinds)
	// The window is an hour scaled down as the periods are: what it counts
	// is what an hour at the default periods sends.
	perHour := float64(total)
	b.ReportMetric(perHour, "requests/node/hour")
	b.ReportMetric(float64(watchesOpen), "watches-open")
	b.ReportMetric(float64(maxRSS)/1024, "rss-MiB")
	b.ReportMetric(float64(maxAnon)/1024, "rss-anon-MiB")
	fmt.Printf("idle %s: %.0f requests per node per hour at the default periods (counted over %s with resync %s and token check %s, %d times shorter): %s\n"+
		"idle %s: %d watches open, %d opened in the window; CPU %.0f ms in the window (the periodic work of an hour); RSS %.1f MiB (anonymous %.1f MiB)\n"+
		"idle %s: at 5000 nodes %.1f requests/s, at 15000 nodes %.1f requests/s\n",
		in.name, perHour, window, resync, check, scale, strings.Join(kinds, ", "),
		in.name, watchesOpen, watchesAfter-watchesOpen, float64(cpu)/float64(time.Millisecond), float64(maxRSS)/1024, float64(maxAnon)/1024,
		in.name, perHour*5000/3600, perHour*15000/3600)
}

// watcherKubeconfig is calico-kubeconfig as calico-node's token watcher
// writes it (fixtures/installs/kubeconfig-token-watch.txt), for token.
func watcherKubeconfig(b *testing.B, e *env, token string) []byte {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "installs", "kubeconfig-token-watch.txt"))
	must(b, err)
	host, port, _ := strings.Cut(cp.Host(), ":")
	return []byte(strings.NewReplacer("@@SERVER@@", "https://"+host+":"+port,
		"@@CA_B64@@", base64.StdEncoding.EncodeToString(cp.CAData()), "@@TOKEN@@", token).Replace(string(raw)))
}

// statusPath is where launchAgent puts the agent's status file.
func statusPath(e *env) string { return filepath.Join(e.dir, "status-"+e.node+".json") }

// statusToken reads the token section of the agent's status file.
func statusToken(e *env) (exp *time.Time, accepted *bool) {
	data, err := os.ReadFile(statusPath(e))
	if err != nil {
		return nil, nil
	}
	var doc struct {
		Token struct {
			ExpiresAt *time.Time `json:"expiresAt"`
			Accepted  *bool      `json:"accepted"`
		} `json:"token"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return nil, nil
	}
	return doc.Token.ExpiresAt, doc.Token.Accepted
}

// BenchmarkGuardVerdict: calico-node's token watcher writes a fresh, healthy
// token (its layout, truncate-and-write); how long until the agent has
// judged it (the status file shows its expiry and the API server's verdict),
// writing nothing.
func BenchmarkGuardVerdict(b *testing.B) {
	e := operatorNodeEnv(b)
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	kcPath := filepath.Join(e.net, "calico-kubeconfig")
	writes := a.metric("calico_cni_sync_writes_total")
	waiter := newFileWaiter(b, e.dir, filepath.Base(statusPath(e)))
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 50; i++ {
		// A lifetime a few seconds apart each time: the status file tells
		// the tokens apart by their expiry.
		tok, err := cp.TokenFor(e.ctx, "calico-system", "calico-cni-plugin", time.Hour+time.Duration(i*7)*time.Second)
		must(b, err)
		claims, ok := tokenExpiry(tok)
		if !ok {
			b.Fatal("a TokenRequest token without exp")
		}
		start := time.Now()
		must(b, os.WriteFile(kcPath, watcherKubeconfig(b, e, tok), 0o600))
		waiter.wait(b, func(string) bool {
			exp, acc := statusToken(e)
			return exp != nil && exp.Equal(claims) && acc != nil && *acc
		})
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	if got := a.metric("calico_cni_sync_writes_total"); got != writes {
		b.Fatalf("the agent wrote over healthy tokens: writes %v, was %v", got, writes)
	}
	report(b, "guard-healthy-rewrite-to-verdict", samples)
}

// BenchmarkGuardRepair: a token for another account appears in
// calico-kubeconfig (calico-node's refresher gone wrong); how long until a
// healthy token for the CNI account is on disk.
func BenchmarkGuardRepair(b *testing.B) {
	e := operatorNodeEnv(b)
	e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	kcPath := filepath.Join(e.net, "calico-kubeconfig")
	waiter := newFileWaiter(b, e.net, "calico-kubeconfig")
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < 30; i++ {
		wrong, err := cp.TokenFor(e.ctx, "calico-system", "calico-node", time.Hour)
		must(b, err)
		start := time.Now()
		must(b, os.WriteFile(kcPath, watcherKubeconfig(b, e, wrong), 0o600))
		waiter.wait(b, func(content string) bool {
			cfg, err := clientcmd.Load([]byte(content))
			if err != nil {
				return false
			}
			for _, u := range cfg.AuthInfos {
				return subjectOf(u.Token) == "system:serviceaccount:calico-system:calico-cni-plugin"
			}
			return false
		})
		samples = append(samples, time.Since(start))
	}
	report(b, "guard-unhealthy-to-healthy", samples)
}

// tokenExpiry reads a JWT's exp, for matching, never for trust.
func tokenExpiry(token string) (time.Time, bool) {
	var c struct {
		Exp int64 `json:"exp"`
	}
	if !jwtClaims(token, &c) || c.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0).UTC(), true
}

func subjectOf(token string) string {
	var c struct {
		Sub string `json:"sub"`
	}
	jwtClaims(token, &c)
	return c.Sub
}

func jwtClaims(token string, into any) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	return err == nil && json.Unmarshal(payload, into) == nil
}
