package cniconf

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCorruptFileSettles: a corrupt file that changed moments ago (a writer
// half way through truncate-then-write) is left alone until it settles.
func TestCorruptFileSettles(t *testing.T) {
	dir := t.TempDir()
	in := goldenInputs(fixtureData(t, "calico-config-v3.32.yaml"), clusterEnv)
	in.NetDir = dir
	want, err := BuildDesired(in, "")
	if err != nil {
		t.Fatal(err)
	}
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
