package scale

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/measure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var mtuField = regexp.MustCompile(`"mtu":\s*\d+`)

// setMTU changes the mtu in the operator's cni-config template, as the
// operator does when the Installation's MTU changes.
func (h *harness) setMTU(mtu int) error {
	cms := h.c.cp.Client.CoreV1().ConfigMaps("calico-system")
	cm, err := cms.Get(h.ctx, "cni-config", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !mtuField.MatchString(cm.Data["config"]) {
		return fmt.Errorf("cni-config has no mtu")
	}
	cm.Data["config"] = mtuField.ReplaceAllString(cm.Data["config"], fmt.Sprintf(`"mtu":%d`, mtu))
	_, err = cms.Update(h.ctx, cm, metav1.UpdateOptions{})
	return err
}

func hasMTU(mtu int) func(int, []byte) bool {
	re := regexp.MustCompile(fmt.Sprintf(`"mtu":\s*%d\b`, mtu))
	return func(_ int, b []byte) bool { return re.Match(b) }
}

// caused sums up what the agents did since mark, once they have been quiet
// for two seconds.
func (h *harness) caused(mark int, f *fleet, since time.Time) (changeResult, []request) {
	h.c.audit.settle(mark, byAgents, 2*time.Second, 30*time.Second)
	reqs := h.c.audit.since(mark, byAgents)
	res := changeResult{Requests: counts(reqs), Conditions: h.ready.takeReasons(), Events: h.eventReasons(f, since), ConditionsAfter: h.ready.reasonsNow(f)}
	// A token the API server rejects authenticates no one: its requests
	// are anonymous 401s, counted apart.
	res.Rejected = counts(h.c.audit.since(mark, func(r request) bool { return r.Code == 401 }))
	events := make([]int, h.n)
	for _, r := range reqs {
		switch {
		case strings.HasPrefix(r.Resource, "nodes") && r.Verb != "get" && r.Verb != "list" && r.Verb != "watch":
			res.NodeStatusWrites++
		case r.Resource == "events" && (r.Verb == "create" || r.Verb == "patch" || r.Verb == "update"):
			res.EventsTotal++
			if i := agentIndex(r); i >= 0 && i < h.n {
				events[i]++
			}
		}
	}
	res.EventsMaxPerAgent = maxInt(events)
	return res, reqs
}

// configMapChange changes the MTU once and times every node's file.
func (h *harness) configMapChange(f *fleet, mtu int) (changeResult, error) {
	f.files.drain()
	mark := h.c.audit.mark()
	cpu := h.cpuNow(f)
	h.ready.takeReasons()
	start := time.Now()
	if err := h.setMTU(mtu); err != nil {
		return changeResult{}, err
	}
	done, err := f.files.wait("10-calico.conflist", hasMTU(mtu), time.Minute)
	if err != nil {
		return changeResult{}, err
	}
	used := h.cpuNow(f).minus(cpu)
	res, _ := h.caused(mark, f, start)
	res.Current = spreadOf(sinceEach(start, done))
	res.AgentCPUMs, res.APICPUMs, res.WallMs = ms(used.agents), ms(used.api), res.Current.Max
	return res, nil
}

// watcherKubeconfig is calico-kubeconfig as calico-node's token watcher
// writes it, pointing at this cluster's API server.
func (h *harness) watcherKubeconfig(token string) ([]byte, error) {
	raw, err := os.ReadFile(fixture("installs/kubeconfig-token-watch.txt"))
	if err != nil {
		return nil, err
	}
	return []byte(strings.NewReplacer("@@SERVER@@", "https://"+h.c.cp.Host(),
		"@@CA_B64@@", base64.StdEncoding.EncodeToString(h.c.cp.CAData()), "@@TOKEN@@", token).Replace(string(raw))), nil
}

// guardRefresh plays calico-node's token watcher on every node within one
// second: each node's calico-kubeconfig rewritten (truncate and write) with
// a fresh, healthy token of its own. The agents must judge them and write
// nothing.
func (h *harness) guardRefresh(f *fleet) (guardResult, error) {
	contents := make([][]byte, h.n)
	exps := make([]int64, h.n)
	for i := range contents {
		tok, err := h.c.cp.TokenFor(h.ctx, "calico-system", "calico-cni-plugin", 2*time.Hour+time.Duration(i)*time.Second)
		if err != nil {
			return guardResult{}, err
		}
		if exps[i] = tokenExpiry(tok); exps[i] == 0 {
			return guardResult{}, fmt.Errorf("a TokenRequest token without exp")
		}
		if contents[i], err = h.watcherKubeconfig(tok); err != nil {
			return guardResult{}, err
		}
	}
	writesBefore, err := h.writesTotal(f)
	if err != nil {
		return guardResult{}, err
	}
	mark := h.c.audit.mark()
	start := time.Now()
	// One loop writes each node's file at its turn and checks the status
	// files of those written and not yet judged, so that a verdict is timed
	// from its own write.
	written := make([]time.Time, h.n)
	verdicts := make([]time.Duration, h.n)
	next, pending := 0, h.n
	err = wait.PollUntilContextTimeout(h.ctx, 5*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for next < h.n && !time.Now().Before(start.Add(time.Duration(next)*time.Second/time.Duration(h.n))) {
			if err := os.WriteFile(filepath.Join(f.nodes[next].net, "calico-kubeconfig"), contents[next], 0o600); err != nil {
				return false, err
			}
			written[next] = time.Now()
			next++
		}
		for i := range next {
			if verdicts[i] == 0 && statusAccepts(f.nodes[i].statusPath(), exps[i]) {
				verdicts[i] = time.Since(written[i])
				pending--
			}
		}
		return pending == 0, nil
	})
	if err != nil {
		return guardResult{}, fmt.Errorf("guard: %d of %d agents gave no verdict within a minute: %w", pending, h.n, err)
	}
	res := guardResult{WrittenInMs: ms(written[h.n-1].Sub(start))}
	res.Verdict = spreadOf(verdicts)
	cr, _ := h.caused(mark, f, start)
	res.Requests = cr.Requests
	writesAfter, err := h.writesTotal(f)
	if err != nil {
		return guardResult{}, err
	}
	res.AgentWrites = writesAfter - writesBefore
	for i, n := range f.nodes {
		if b, err := os.ReadFile(filepath.Join(n.net, "calico-kubeconfig")); err != nil || !bytes.Equal(b, contents[i]) {
			res.FilesRewritten++
		}
	}
	return res, nil
}

func (h *harness) writesTotal(f *fleet) (float64, error) {
	sum := 0.0
	for _, n := range f.nodes {
		v, err := n.metric("calico_cni_sync_writes_total")
		if err != nil {
			return 0, fmt.Errorf("metrics of %s: %w", n.name, err)
		}
		sum += v
	}
	return sum, nil
}

// statusAccepts reports whether the agent's status file shows the token
// with this expiry, accepted by the API server.
func statusAccepts(path string, exp int64) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var doc struct {
		Token struct {
			ExpiresAt *time.Time `json:"expiresAt"`
			Accepted  *bool      `json:"accepted"`
		} `json:"token"`
	}
	if json.Unmarshal(data, &doc) != nil || doc.Token.ExpiresAt == nil || doc.Token.Accepted == nil {
		return false
	}
	return doc.Token.ExpiresAt.Unix() == exp && *doc.Token.Accepted
}

// tokenExpiry reads a JWT's exp, for matching, never for trust.
func tokenExpiry(token string) int64 {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.Exp
}

// tokenSecretRegenerated is the seed's story: calico-node's legacy token
// Secret deleted and recreated under a new name, populated by the token
// controller; timed from the moment it was populated.
func (h *harness) tokenSecretRegenerated(f *fleet, old, name string) (changeResult, error) {
	secrets := h.c.cp.Client.CoreV1().Secrets(seedNamespace)
	w, err := secrets.Watch(h.ctx, metav1.ListOptions{})
	if err != nil {
		return changeResult{}, err
	}
	defer w.Stop()
	f.files.drain()
	mark := h.c.audit.mark()
	h.ready.takeReasons()
	deleted := time.Now()
	if err := secrets.Delete(h.ctx, old, metav1.DeleteOptions{}); err != nil {
		return changeResult{}, err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
		Type: corev1.SecretTypeServiceAccountToken}
	if _, err := secrets.Create(h.ctx, s, metav1.CreateOptions{}); err != nil {
		return changeResult{}, err
	}
	var token []byte
	var populated time.Time
	timeout := time.After(time.Minute)
	for token == nil {
		select {
		case ev := <-w.ResultChan():
			if sec, ok := ev.Object.(*corev1.Secret); ok && sec.Name == name && len(sec.Data["token"]) > 0 {
				token, populated = sec.Data["token"], time.Now()
			}
		case <-timeout:
			return changeResult{}, fmt.Errorf("the token controller did not populate %s", name)
		}
	}
	cpu := h.cpuNow(f)
	done, err := f.files.wait("calico-kubeconfig", func(_ int, b []byte) bool { return bytes.Contains(b, token) }, time.Minute)
	if err != nil {
		return changeResult{}, err
	}
	used := h.cpuNow(f).minus(cpu)
	res, _ := h.caused(mark, f, deleted)
	res.Current = spreadOf(sinceEach(populated, done))
	res.AgentCPUMs, res.APICPUMs, res.WallMs = ms(used.agents), ms(used.api), res.Current.Max
	return res, nil
}

// apiServerRestart restarts the API server with every agent connected,
// changes the MTU as soon as it is back, and times the watches' return and
// the change's arrival on every node.
func (h *harness) apiServerRestart(f *fleet, mtu int) (restartResult, error) {
	f.files.drain()
	mark := h.c.audit.mark()
	down := time.Now()
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Minute)
	defer cancel()
	if err := h.c.cp.RestartAPIServer(ctx, false); err != nil {
		return restartResult{}, err
	}
	res := restartResult{OutageMs: ms(time.Since(down))}
	changed := time.Now()
	if err := h.setMTU(mtu); err != nil {
		return restartResult{}, err
	}
	done, err := f.files.wait("10-calico.conflist", hasMTU(mtu), 2*time.Minute)
	if err != nil {
		return restartResult{}, err
	}
	res.Converged = spreadOf(sinceEach(changed, done))
	// Every agent has re-opened as many watches as it opened at start-up.
	back := make([]time.Time, h.n)
	var first time.Time
	missing := 0
	err = wait.PollUntilContextTimeout(h.ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		reqs := h.c.audit.since(mark, nil)
		seen := make([]int, h.n)
		missing = 0
		for _, r := range reqs {
			if !r.At.After(down) {
				continue
			}
			if first.IsZero() || r.At.Before(first) {
				first = r.At
			}
			if i := agentIndex(r); i >= 0 && i < h.n && r.Verb == "watch" && r.Code < 400 {
				if seen[i]++; seen[i] == f.watches[i] {
					back[i] = r.At
				}
			}
		}
		for i := range back {
			if seen[i] < f.watches[i] {
				missing++
			}
		}
		return missing == 0, nil
	})
	if err != nil {
		return restartResult{}, fmt.Errorf("restart: %d agents have not re-opened their watches: %w", missing, err)
	}
	res.WatchesBack = spreadOf(sinceEach(first, back))
	cr, reqs := h.caused(mark, f, down)
	res.Requests = cr.Requests
	var relists []time.Duration
	for _, r := range reqs {
		if isAgent(r) && r.Verb == "list" && !r.At.Before(first) {
			relists = append(relists, r.At.Sub(first))
		}
	}
	res.Relists = spreadOf(relists)
	if len(relists) > 0 {
		res.RelistFirstMs = ms(relists[0])
		res.RelistPerSec = make([]int, int(res.Relists.Max/1000)+1)
		for _, d := range relists {
			res.RelistFirstMs = min(res.RelistFirstMs, ms(d))
			res.RelistPerSec[int(d/time.Second)]++
		}
	}
	return res, nil
}

// cpuUse is CPU time used by all of a fleet's agents and by the API server.
type cpuUse struct{ agents, api time.Duration }

func (c cpuUse) minus(o cpuUse) cpuUse { return cpuUse{c.agents - o.agents, c.api - o.api} }

// cpuNow reads the fleet's and the API server's CPU time (what cannot be
// read counts as nothing).
func (h *harness) cpuNow(f *fleet) cpuUse {
	var u cpuUse
	for _, n := range f.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			d, _ := measure.CPU(n.cmd.Process.Pid)
			u.agents += d
		}
	}
	if _, api, err := h.apiServerSample(); err == nil {
		u.api = api
	}
	return u
}

// eventReasons counts the events on the fleet's Nodes since a moment, by
// reason.
func (h *harness) eventReasons(f *fleet, since time.Time) map[string]int {
	list, err := h.c.cp.Client.CoreV1().Events("default").List(h.ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	mine := map[string]bool{}
	for _, n := range f.nodes {
		mine[n.name] = true
	}
	out := map[string]int{}
	for _, ev := range list.Items {
		at := ev.LastTimestamp.Time
		if ev.EventTime.After(at) {
			at = ev.EventTime.Time
		}
		if mine[ev.InvolvedObject.Name] && !at.Before(since.Truncate(time.Second)) {
			out[ev.Reason]++
		}
	}
	return out
}
