package reconcile

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// gate is a rollout gate that says what the test tells it.
type gate struct {
	apply bool
	asked []string // the revisions Decide was asked about
}

func (g *gate) Decide(_ context.Context, c rollout.Change) rollout.Decision {
	g.asked = append(g.asked, c.Revision)
	if g.apply {
		return rollout.Decision{Revision: c.Revision, Apply: true, Phase: rollout.Applied, Mode: rollout.Waves, Wave: 2}
	}
	return rollout.Decision{Revision: c.Revision, Phase: rollout.Waiting, Mode: rollout.Waves, Wave: 2,
		OpensAt: time.Now().Add(time.Hour), Reason: "revision " + c.Revision + " waits for wave 2"}
}

func (g *gate) At(_ context.Context, c rollout.Change) rollout.Decision {
	return rollout.Decision{Revision: c.Revision, Apply: true, Phase: rollout.Applied, Mode: rollout.Waves, Wave: 2}
}

// TestStagedChangeWaits: a ConfigMap change waits at the gate and the file
// keeps its content; a token change, a fact of the node and a missing file
// never wait; once the gate opens the change is written.
func TestStagedChangeWaits(t *testing.T) {
	mtu := "0"
	r := testReconciler(t, fixtureInstall(t, &mtu))
	r.CA = func() ([]byte, error) { return []byte(caA), nil }
	g := &gate{}
	r.Rollout = g
	ctx := context.Background()
	conf := filepath.Join(r.Dir.NetDir, cniconf.DefaultConfListName)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Missing files are written whatever the gate says.
	rep, _, err := r.Reconcile(ctx, ModeSync)
	if err != nil || rep.Worst() != cniconf.InSync {
		t.Fatalf("first pass: %v %s", err, rep.Worst())
	}
	first := rep.Rollout.Revision
	if rep.Rollout == nil || rep.Rollout.Phase != rollout.Applied || !strings.HasPrefix(first, "sha256:") {
		t.Fatalf("first pass rollout %+v", rep.Rollout)
	}
	before := read(conf)

	// A ConfigMap change: held.
	mtu = "1440"
	rep, pass, err := r.Reconcile(ctx, ModeSync)
	if err != nil {
		t.Fatal(err)
	}
	if read(conf) != before {
		t.Fatal("a waiting change was written")
	}
	if !rep.Rollout.Waits() || rep.Rollout.Revision == first || !slices.Contains(rep.Rollout.Held, conf) || pass.Rollout != rep.Rollout {
		t.Fatalf("rollout %+v, want the conf held for a new revision", rep.Rollout)
	}
	for _, f := range rep.Files {
		if f.Path == conf && (f.State != cniconf.Outdated || !strings.Contains(f.Message, "waits for wave 2")) {
			t.Errorf("held conf reported %s: %q", f.State, f.Message)
		}
	}
	second := rep.Rollout.Revision

	// A new token while the change waits: written into the kubeconfig.
	r.Token = token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
		return token.Token{Value: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln", Source: token.SourceFile}, nil
	})
	if _, _, err := r.Reconcile(ctx, ModeSync); err != nil {
		t.Fatal(err)
	}
	if kc := read(filepath.Join(r.Dir.NetDir, cniconf.DefaultKubeconfigName)); !strings.Contains(kc, "eyJzdWIiOiJ5In0") {
		t.Error("the token was not rotated while a change waited")
	}
	if read(conf) != before {
		t.Fatal("the token rotation wrote the waiting change")
	}

	// The gate opens: written.
	g.apply = true
	rep, _, err = r.Reconcile(ctx, ModeSync)
	if err != nil || rep.Worst() != cniconf.InSync || !strings.Contains(read(conf), `"mtu": 1440`) {
		t.Fatalf("opened gate: %v %s", err, rep.Worst())
	}
	if rep.Rollout.Revision != second || rep.Rollout.Phase != rollout.Applied {
		t.Errorf("after applying: %+v", rep.Rollout)
	}

	// A fact of the node changes, the ConfigMap does not: never staged.
	g.apply, g.asked = false, nil
	r.NodeName = "node-2"
	rep, _, err = r.Reconcile(ctx, ModeSync)
	if err != nil || rep.Worst() != cniconf.InSync || !strings.Contains(read(conf), "node-2") {
		t.Fatalf("a node fact waited: %v %s %+v", err, rep.Worst(), rep.Rollout)
	}
	if len(g.asked) != 0 {
		t.Errorf("the gate was asked about %v for a change of the node's own", g.asked)
	}
}
