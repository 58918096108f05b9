package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/fsnotify/fsnotify"
)

// TestOwnWritesTriggerNothing: the renames of a pass's own writes start no
// other pass; another writer's change still does, and a rename that did
// not happen is expected no more.
func TestOwnWritesTriggerNothing(t *testing.T) {
	mtu := "1400"
	first := testReconciler(t, fixtureInstall(t, &mtu), nil)
	if _, _, err := first.Reconcile(context.Background(), reconcile.ModeSync); err != nil {
		t.Fatal(err)
	}
	own := &OwnWrites{}
	r := *first // the same directory, its renames told to own
	r.Dir.Renaming = own.Renaming
	triggers := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := watchDirs(ctx, []string{r.Dir.NetDir}, cniDirFilter([]string{"10-calico.conflist", "calico-kubeconfig"}),
		func(why string) { triggers <- why }, own, logger); err != nil {
		t.Fatal(err)
	}
	// The agent's write of a change: the conf renamed into place.
	mtu = "1460"
	rep, pass, err := r.Reconcile(context.Background(), reconcile.ModeSync)
	if err != nil {
		t.Fatal(err)
	}
	if pass.Outcomes[0].Action == "" {
		t.Fatalf("nothing written: %+v", rep.Files)
	}
	// Then another writer: events come in order, so a trigger of the
	// agent's own write would come before this one.
	replaceFile(t, filepath.Join(r.Dir.NetDir, "05-other.conflist"), `{"name": "other"}`)
	select {
	case why := <-triggers:
		if why != "file 05-other.conflist" {
			t.Fatalf("the first trigger after the agent's own write is %q, want the other writer's", why)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("another writer's change triggered nothing")
	}
}

// TestOwnWritesCountEachRename: an expected rename cancels one event of its
// name, and one that failed none.
func TestOwnWritesCountEachRename(t *testing.T) {
	own := &OwnWrites{}
	ev := fsnotify.Event{Name: "/net/10-calico.conflist", Op: fsnotify.Create}
	own.Renaming(ev.Name)(true)
	if !own.consume(ev) {
		t.Fatal("the event of an expected rename was not recognised")
	}
	if own.consume(ev) {
		t.Fatal("one rename cancelled two events")
	}
	own.Renaming(ev.Name)(false)
	if own.consume(ev) {
		t.Fatal("a rename that did not happen cancelled an event")
	}
	own.Renaming(ev.Name)(true)
	if own.consume(fsnotify.Event{Name: ev.Name, Op: fsnotify.Write}) {
		t.Fatal("an in-place write was taken for the rename")
	}
	own.forget()
	if own.consume(ev) {
		t.Fatal("a forgotten rename cancelled an event")
	}
}

// TestOwnWritesRenamedAt: the time of a rename into place is kept by path
// (for the write's log line), and a rename that did not happen keeps none.
func TestOwnWritesRenamedAt(t *testing.T) {
	own := &OwnWrites{}
	if at := own.renamedAt("/net/10-calico.conflist"); !at.IsZero() {
		t.Fatalf("a path never renamed has a rename time %v", at)
	}
	own.Renaming("/net/calico-kubeconfig")(false)
	if at := own.renamedAt("/net/calico-kubeconfig"); !at.IsZero() {
		t.Fatalf("a rename that failed was kept at %v", at)
	}
	before := time.Now()
	own.Renaming("/net/10-calico.conflist")(true)
	if at := own.renamedAt("/net//10-calico.conflist"); at.Before(before) || at.After(time.Now()) {
		t.Fatalf("rename time %v, want between %v and now", at, before)
	}
	var none *OwnWrites
	if !none.renamedAt("/net/10-calico.conflist").IsZero() {
		t.Fatal("no OwnWrites, yet a rename time")
	}
}
