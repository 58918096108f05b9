package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The soak runs for $CALICO_CNI_SYNC_SOAK (a Go duration: `make soak` sets
// 10m, and runs the agent as it ships so that its RSS means something), else
// for 60 s with the race detector's agent, as `make test` runs it.
// $CALICO_CNI_SYNC_SOAK_SEED replays a schedule.
const (
	soakEnv     = "CALICO_CNI_SYNC_SOAK"
	soakSeedEnv = "CALICO_CNI_SYNC_SOAK_SEED"
)

// Growth the agent may show after the warm-up: a few goroutines and file
// descriptors come and go with each reconcile, token check and watch.
const (
	soakGoroutineSlack = 5
	soakFDSlack        = 5
	soakRSSGrowth      = 1.20 // judged only in runs of soakRSSAfter or more
	soakRSSAfter       = 5 * time.Minute
	soakForever        = time.Duration(math.MaxInt64)
	// How long net/http keeps an idle connection (client-go's transports
	// take http.DefaultTransport's), and the agent's token check period.
	soakIdleConnTimeout  = 90 * time.Second
	soakTokenCheckPeriod = 2 * time.Second
)

// Values the schedule picks from: ConfigMap MTUs and hand-edit MTUs never
// meet, so a file always tells which one it holds.
var (
	soakConfigMapMTUs = []int{0, 1400, 1440, 1450, 1480}
	soakEditMTUs      = []int{1234, 1300, 8950, 9000}
)

// TestSoak: one agent through a random schedule of ConfigMap edits, token
// Secret regenerations, hand edits and their undoing, removals of the CNI
// directory and API server restarts. After every action the files come to
// what is expected (the ConfigMap's MTU and the Secret's token, or the hand
// edit kept and reported Drifted); a reader loading the directory as libcni
// does never finds a partial file, nor a hand edit gone; and after the
// warm-up the agent's goroutines, file descriptors (and, in a long run of the
// shipped binary, RSS) do not grow.
func TestSoak(t *testing.T) {
	d := 60 * time.Second
	shipped := false
	if v := os.Getenv(soakEnv); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive Go duration such as 10m", soakEnv, v)
		}
		shipped = true
		useShippedBinary(t)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(soakSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", soakSeedEnv, v, err)
		}
	}
	t.Logf("soak for %s, shipped binary %t, seed %d (%s=%d replays the schedule)", d, shipped, seed, soakSeedEnv, seed)

	e := newEnv(t, "calico-config-v3.32.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Minute)
	defer cancel()
	e.ctx = ctx // newEnv's five minutes are shorter than a long soak
	a := e.startAgent("--resync-period", "5s", "--token-check-period", soakTokenCheckPeriod.String())
	s := &soak{e: e, rng: rand.New(rand.NewPCG(seed, 0)), reader: &soakReader{net: e.net},
		conf: filepath.Join(e.net, "10-calico.conflist"), shipped: shipped, token: e.secretToken(e.secret), stats: map[string]*soakStat{}}
	s.tokens = append(s.tokens, s.token)
	s.converge("start")

	began := time.Now()
	observe, stopObserving := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { s.reader.run(observe); done <- struct{}{} }()
	sampler := newProcSampler(a, cp.Host())
	go func() { sampler.run(observe, began, max(2*time.Second, d/150)); done <- struct{}{} }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopObserving()
			<-done
			<-done
		}
	}
	defer stop()
	var warmup time.Duration
	defer func() { s.summary(t, sampler, warmup, time.Since(began)) }()

	// Every kind of action once, in a random order, then at random: the
	// warm-up has taken every path before the baseline is measured.
	actions := s.actions()
	deck := make([]int, len(actions))
	for i := range deck {
		deck[i] = i
	}
	s.rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
	for time.Since(began) < d {
		pace := time.NewTimer(time.Duration(100+s.rng.IntN(1400)) * time.Millisecond)
		select {
		case <-pace.C:
		case <-ctx.Done():
			t.Fatal("soak ran out of time")
		}
		var act soakAction
		act, deck = s.next(actions, deck)
		t.Logf("%6.1fs %s", time.Since(began).Seconds(), act.name)
		start := time.Now()
		act.do()
		acted := time.Now()
		s.converge(act.name)
		s.record(act.name, acted.Sub(start), time.Since(acted))
		if len(deck) == 0 && warmup == 0 && time.Since(began) >= d/3 {
			warmup = time.Since(began)
		}
	}
	if warmup == 0 {
		warmup = time.Since(began) // the deck took the whole run: judge its end
	}

	// Undo everything: the node comes back to InSync.
	if s.edit != 0 {
		s.undo(false)
	}
	if s.mtu != 0 {
		s.setMTU(0)
	}
	s.converge("everything undone")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	must(t, a.probe("/healthz"))
	must(t, a.probe("/readyz"))
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || !strings.HasSuffix(who, ":calico-node") {
		t.Errorf("after the soak the kubeconfig on disk is %q (%v)", who, err)
	}
	s.checkNoGrowth(t, sampler, warmup)
	stop()
	s.reader.check(t)

	a.stop()
	for i, tok := range s.tokens {
		if strings.Contains(a.Output(), tok) {
			t.Errorf("the agent's output shows token %d of %d", i+1, len(s.tokens))
		}
	}
}

// soak is the schedule's state: what the node's files must come to.
type soak struct {
	e      *env
	rng    *rand.Rand
	reader *soakReader
	conf   string // the conflist's path
	// shipped: the agent is the binary as it ships, its RSS meaningful.
	shipped bool

	mtu      int    // the ConfigMap's veth_mtu
	token    string // the current token Secret's token
	edit     int    // the MTU of the hand edit in place, 0 when none
	unedited []byte // the conflist before that edit

	tokens      []string // every token the soak issued, none to be logged
	secrets     int
	lastRestart time.Time
	stats       map[string]*soakStat
}

// soakStat counts one kind of action, and keeps the slowest action (a
// token Secret waits for the token controller) and the slowest convergence
// of the node after it.
type soakStat struct {
	n                     int
	slowestAct, slowestTo time.Duration
}

type soakAction struct {
	name   string
	weight int
	can    func() bool
	do     func()
}

func (s *soak) actions() []soakAction {
	always := func() bool { return true }
	return []soakAction{
		{"configmap", 4, always, func() {
			s.setMTU(pick(s.rng, soakConfigMapMTUs, s.mtu))
		}},
		{"token", 2, always, func() {
			s.secrets++
			s.e.regenerate(fmt.Sprintf("calico-node-token-soak%04d", s.secrets))
			s.token = s.e.secretToken(s.e.secret)
			s.tokens = append(s.tokens, s.token)
		}},
		{"hand edit", 3, func() bool { return s.edit == 0 }, s.handEdit},
		{"undo", 3, func() bool { return s.edit != 0 }, func() { s.undo(s.rng.IntN(3) == 0) }},
		{"directory removed", 1, always, s.removeDirectory},
		// Slow (seconds), so at most twice a minute.
		{"apiserver restart", 1, func() bool { return time.Since(s.lastRestart) > 30*time.Second }, func() {
			must(s.e.t, cp.RestartAPIServer(s.e.ctx, false))
			s.lastRestart = time.Now()
		}},
	}
}

// next takes the first action of the deck that can run, else one at random
// by weight among those that can.
func (s *soak) next(actions []soakAction, deck []int) (soakAction, []int) {
	for i, a := range deck {
		if actions[a].can() {
			return actions[a], slices.Delete(deck, i, i+1)
		}
	}
	total := 0
	for _, a := range actions {
		if a.can() {
			total += a.weight
		}
	}
	n := s.rng.IntN(total)
	for _, a := range actions {
		if !a.can() {
			continue
		}
		if n < a.weight {
			return a, deck
		}
		n -= a.weight
	}
	s.e.t.Fatal("no action can run")
	return soakAction{}, deck
}

// pick is a value of from other than not.
func pick(rng *rand.Rand, from []int, not int) int {
	for {
		if v := from[rng.IntN(len(from))]; v != not {
			return v
		}
	}
}

func (s *soak) setMTU(mtu int) {
	cm, err := s.e.client.CoreV1().ConfigMaps(s.e.ns).Get(s.e.ctx, "calico-config", metav1.GetOptions{})
	must(s.e.t, err)
	cm.Data["veth_mtu"] = strconv.Itoa(mtu)
	_, err = s.e.client.CoreV1().ConfigMaps(s.e.ns).Update(s.e.ctx, cm, metav1.UpdateOptions{})
	must(s.e.t, err)
	s.mtu = mtu
}

// handEdit changes the MTU in the conflist as an admin would, by rename.
func (s *soak) handEdit() {
	before, err := os.ReadFile(s.conf)
	must(s.e.t, err)
	v := pick(s.rng, soakEditMTUs, 0)
	old := fmt.Sprintf(`"mtu": %d,`, s.mtu)
	if !strings.Contains(string(before), old) {
		s.e.t.Fatalf("the conflist lacks %s:\n%s", old, before)
	}
	s.writeConf([]byte(strings.Replace(string(before), old, fmt.Sprintf(`"mtu": %d,`, v), 1)))
	s.edit, s.unedited = v, before
	s.reader.expectEdit(v)
}

// undo puts back the conflist as it was before the hand edit, or removes it.
// Either way the agent writes what the ConfigMap now says: the old content
// is what it last wrote (Outdated, if the ConfigMap changed since), a
// removed file is Missing.
func (s *soak) undo(remove bool) {
	s.reader.expectNoEdit()
	s.edit = 0
	if remove {
		must(s.e.t, os.Remove(s.conf))
		return
	}
	s.writeConf(s.unedited)
}

// writeConf replaces the conflist atomically, keeping its mode, through a
// temporary name neither libcni nor the agent looks at.
func (s *soak) writeConf(content []byte) {
	fi, err := os.Stat(s.conf)
	must(s.e.t, err)
	tmp := filepath.Join(s.e.net, ".10-calico.conflist.soak-edit")
	must(s.e.t, os.WriteFile(tmp, content, fi.Mode().Perm()))
	must(s.e.t, os.Rename(tmp, s.conf))
}

// removeDirectory removes the CNI directory as
// TestAgentSurvivesTheDirectoryBeingRemoved does: moved away, then removed.
// A hand edit goes with it.
func (s *soak) removeDirectory() {
	s.reader.expectNoEdit()
	s.edit = 0
	gone := s.e.net + ".removed"
	must(s.e.t, os.Rename(s.e.net, gone))
	must(s.e.t, os.RemoveAll(gone))
}

// converge waits until the node's files and condition are what the schedule
// expects. The API server may have just restarted, and client-go's reflector
// waits out its backoff before it lists again: the deadline is generous.
func (s *soak) converge(what string) {
	s.e.t.Helper()
	s.e.eventually(2*time.Minute, "after "+what, s.converged)
}

func (s *soak) converged() error {
	t := s.e.t
	b, err := os.ReadFile(s.conf)
	if s.edit != 0 {
		// Nobody but the agent touches the file while an edit is in place.
		if err != nil {
			t.Fatalf("the hand edit (mtu %d) is lost: %v", s.edit, err)
		}
		if mtu, err := calicoMTU(b); err != nil || mtu != s.edit {
			t.Fatalf("the hand edit (mtu %d) is lost: the file has mtu %d (%v)", s.edit, mtu, err)
		}
	} else {
		if err != nil {
			return err
		}
		mtu, err := calicoMTU(b)
		if err != nil {
			return err
		}
		if mtu != s.mtu {
			return errorf("conflist mtu %d, want the ConfigMap's %d", mtu, s.mtu)
		}
	}
	b, err = os.ReadFile(filepath.Join(s.e.net, "calico-kubeconfig"))
	if err != nil {
		return err
	}
	if tok, err := kubeconfigToken(b); err != nil || tok != s.token {
		return errorf("calico-kubeconfig does not hold the token of Secret %s (%v)", s.e.secret, err)
	}
	c, err := s.e.condition(s.e.node)
	if err != nil {
		return err
	}
	if s.edit != 0 {
		if c.Status != corev1.ConditionTrue || c.Reason != "Drifted" || !strings.Contains(c.Message, "10-calico.conflist") || !strings.Contains(c.Message, "mtu") {
			return errorf("condition %s/%s: %s; want Drifted on the conflist's mtu", c.Status, c.Reason, c.Message)
		}
	} else if c.Status != corev1.ConditionFalse || c.Reason != "InSync" {
		return errorf("condition %s/%s: %s; want InSync", c.Status, c.Reason, c.Message)
	}
	s.e.noTokenIn(c.Message)
	return nil
}

func (s *soak) record(name string, act, converge time.Duration) {
	st := s.stats[name]
	if st == nil {
		st = &soakStat{}
		s.stats[name] = st
	}
	st.n++
	st.slowestAct = max(st.slowestAct, act)
	st.slowestTo = max(st.slowestTo, converge)
}
