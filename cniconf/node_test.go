package cniconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
