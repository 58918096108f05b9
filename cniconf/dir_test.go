package cniconf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestCorruptFileSettles: a corrupt file that changed moments ago (a writer
// half way through truncate-then-write) is left alone until it settles.
func TestCorruptFileSettles(t *testing.T) {
	dir := t.TempDir()
	want := desiredIn(t, dir, "calico-config-v3.32.yaml")
	path := filepath.Join(dir, DefaultConfListName)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	d := &Dir{NetDir: dir, BackupDir: t.TempDir(), StateDir: t.TempDir(), Settle: time.Second, Now: func() time.Time { return clock }}
	st, err := d.Sync(want, false)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].State != Corrupt || st[0].SettleFor <= 0 || st[0].Action != ActionNone {
		t.Fatalf("fresh corrupt file: %+v", st[0])
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatal("a file still being written was replaced")
	}
	clock = clock.Add(2 * time.Second)
	st, err = d.Sync(want, false)
	if err != nil || st[0].Action != ActionWritten || st[0].Backup == "" {
		t.Fatalf("settled corrupt file: %+v %v", st[0], err)
	}
}

// TestHugeFileIsNotDiffed: a file far larger than any CNI config is
// classified and replaced without a diff that could stall the loop.
func TestHugeFileIsNotDiffed(t *testing.T) {
	dir := t.TempDir()
	want := desiredIn(t, dir, "calico-config-v3.32.yaml")
	huge := make([]byte, 8<<20)
	for i := range huge {
		huge[i] = byte('a' + i%26)
		if i%80 == 79 {
			huge[i] = '\n'
		}
	}
	if err := os.WriteFile(filepath.Join(dir, DefaultConfListName), huge, 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Dir{NetDir: dir, BackupDir: t.TempDir(), StateDir: t.TempDir()}
	st := d.Check(want)
	if st[0].State != Corrupt || !strings.Contains(st[0].Diff, "not diffed") {
		t.Fatalf("huge file: %s %q", st[0].State, st[0].Diff)
	}
}

// desiredIn builds the desired files of a fixture for a node directory.
func desiredIn(t *testing.T, dir, fixture string) *Desired {
	t.Helper()
	in := goldenInputs(fixtureData(t, fixture), clusterEnv)
	in.NetDir = dir
	want, err := BuildDesired(in, "")
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// stateEvents runs sync and returns the names of the files created in the
// state directory meanwhile, in order.
func stateEvents(t *testing.T, d *Dir, sync func()) []string {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	dir := recordDir(d.StateDir, d.NetDir)
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	sync()
	// Events come in order: the sentinel's is the last of the pass's.
	sentinel := filepath.Join(dir, "sentinel")
	if err := os.WriteFile(sentinel, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var created []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-w.Events:
			if ev.Name == sentinel {
				return created
			}
			if ev.Has(fsnotify.Create) {
				created = append(created, filepath.Base(ev.Name))
			}
		case <-deadline:
			t.Fatal("the sentinel's event did not come within 30s")
		}
	}
}

// TestProbeOnlyBeforeAChange: the state directory is proved writable before
// a pass changes anything, and a pass that finds every file as it should
// be creates nothing there. Each rename of a write is announced to
// Renaming, before and after.
func TestProbeOnlyBeforeAChange(t *testing.T) {
	d := newTestDir(t)
	a, b := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460")
	mustSync(t, d, a)
	if got := stateEvents(t, d, func() { mustSync(t, d, a) }); len(got) != 0 {
		t.Errorf("a pass with nothing to do created %v in the state directory", got)
	}
	var told []string
	d.Renaming = func(path string) func(bool) {
		told = append(told, "before "+filepath.Base(path))
		return func(renamed bool) { told = append(told, fmt.Sprintf("after %s %v", filepath.Base(path), renamed)) }
	}
	got := stateEvents(t, d, func() { mustSync(t, d, b) })
	if len(got) == 0 || !strings.HasPrefix(got[0], ".probe") {
		t.Errorf("a pass that writes did not probe the state directory first: %v", got)
	}
	if want := []string{"before 10-calico.conflist", "after 10-calico.conflist true"}; !slices.Equal(told, want) {
		t.Errorf("Renaming was told %q, want %q", told, want)
	}
}

// TestSyncDiffsOnlyInADryRun: a dry run shows how a file would change; a
// Sync that writes computes no diff before its write (the state after it
// is what is reported).
func TestSyncDiffsOnlyInADryRun(t *testing.T) {
	d := newTestDir(t)
	mustSync(t, d, desiredMTU(t, d.NetDir, "1400"))
	b := desiredMTU(t, d.NetDir, "1460")
	dry, err := d.Sync(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dry[0].Diff, `"mtu": 1460`) {
		t.Errorf("the dry run's diff: %q", dry[0].Diff)
	}
	if st := mustSync(t, d, b); st[0].Action != ActionWritten || st[0].Diff != "" {
		t.Errorf("the write: action %q, diff %q", st[0].Action, st[0].Diff)
	}
}
