package cniconf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// syncWithin runs Sync and fails the test if it does not return in time: an
// odd file must never make a pass hang.
func syncWithin(t *testing.T, d *Dir, want *Desired) ([]Outcome, error) {
	t.Helper()
	type result struct {
		st  []Outcome
		err error
	}
	done := make(chan result, 1)
	go func() { st, err := d.Sync(want, false); done <- result{st, err} }()
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("Sync hung on an odd file")
		return nil, nil
	}
}

// TestOddFilesAtTheManagedPath: whatever sits at the conf's path, a pass
// ends with a clear state, never reads through a link or a FIFO, and never
// touches a link's target.
func TestOddFilesAtTheManagedPath(t *testing.T) {
	cases := []struct {
		name      string
		make      func(t *testing.T, path string)
		state     State
		message   string
		rewritten bool
	}{
		{name: "FIFO", make: func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o600)) },
			state: Corrupt, message: "a FIFO", rewritten: true},
		{name: "symlink to /dev/zero", make: func(t *testing.T, p string) { must(t, os.Symlink("/dev/zero", p)) },
			state: Corrupt, message: "a symlink to /dev/zero", rewritten: true},
		{name: "50 MB file", make: func(t *testing.T, p string) {
			f, err := os.Create(p)
			must(t, err)
			must(t, f.Truncate(50<<20))
			must(t, f.Close())
		}, state: Corrupt, message: "larger than", rewritten: true},
		{name: "directory", make: func(t *testing.T, p string) { must(t, os.Mkdir(p, 0o755)) },
			state: Error, message: "is a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			want := desiredMTU(t, d.NetDir, "1400")
			path := filepath.Join(d.NetDir, want.Conf().Name)
			tc.make(t, path)
			st, err := syncWithin(t, d, want)
			must(t, err) // an Error file is the reconcile's error, not Sync's
			if st[0].State != tc.state || !strings.Contains(st[0].Message, tc.message) {
				t.Fatalf("%s: %s %q", tc.name, st[0].State, st[0].Message)
			}
			fi, err := os.Lstat(path)
			must(t, err)
			if tc.rewritten {
				if !fi.Mode().IsRegular() || st[0].Backup == "" {
					t.Fatalf("not replaced by a regular file with a backup: %s %q", fi.Mode(), st[0].Backup)
				}
				b, err := os.ReadFile(st[0].Backup)
				must(t, err)
				if !strings.Contains(string(b), tc.message) {
					t.Errorf("backup does not say what was there: %q", b)
				}
			} else if !fi.IsDir() {
				t.Fatal("the directory was touched")
			}
		})
	}
}

// TestSymlinkTargetIsUntouched: a link at the managed path is replaced; the
// file it pointed at keeps its content.
func TestSymlinkTargetIsUntouched(t *testing.T) {
	d := newTestDir(t)
	want := desiredMTU(t, d.NetDir, "1400")
	target := filepath.Join(t.TempDir(), "elsewhere.conflist")
	must(t, os.WriteFile(target, []byte("precious"), 0o644))
	must(t, os.Symlink(target, filepath.Join(d.NetDir, want.Conf().Name)))
	st, err := syncWithin(t, d, want)
	must(t, err)
	if st[0].State != Corrupt || !strings.Contains(st[0].Message, target) {
		t.Fatalf("%s %q", st[0].State, st[0].Message)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatal("the link's target was written through")
	}
}

// TestFutureMtimeDoesNotFreeze: a corrupt file stamped in the future is
// replaced, not waited on forever.
func TestFutureMtimeDoesNotFreeze(t *testing.T) {
	d := newTestDir(t)
	d.Settle = time.Second
	want := desiredMTU(t, d.NetDir, "1400")
	path := filepath.Join(d.NetDir, want.Conf().Name)
	must(t, os.WriteFile(path, []byte("{"), 0o600))
	future := time.Now().Add(24 * time.Hour)
	must(t, os.Chtimes(path, future, future))
	st, err := d.Sync(want, false)
	must(t, err)
	if st[0].SettleFor != 0 || st[0].Action != ActionWritten {
		t.Fatalf("future mtime: settle %v action %q", st[0].SettleFor, st[0].Action)
	}
}

// TestTokenFileModeIsRestored: a token-bearing file readable by others is
// Drifted (path "mode") and closed again under either policy, a kept edit
// included.
func TestTokenFileModeIsRestored(t *testing.T) {
	for _, policy := range []Policy{PolicyReport, PolicyEnforce} {
		t.Run(string(policy), func(t *testing.T) {
			d := newTestDir(t)
			d.Policy = policy
			want := desiredMTU(t, d.NetDir, "1400")
			mustSync(t, d, want)
			kc := filepath.Join(d.NetDir, DefaultKubeconfigName)
			must(t, os.Chmod(kc, 0o644))
			st := d.Check(want)[1]
			if st.State != Drifted || !slices.Equal(st.ChangedPaths, []string{"mode"}) {
				t.Fatalf("world-readable kubeconfig: %s %v", st.State, st.ChangedPaths)
			}
			mustSync(t, d, want)
			if fi, _ := os.Stat(kc); fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %s after a pass", fi.Mode().Perm())
			}
			if st := d.Check(want)[1]; st.State != InSync {
				t.Fatalf("after a pass: %s", st.State)
			}
			// A hand edit, world-readable: the edit stays under
			// report, the mode is closed under both.
			edit := strings.Replace(string(want.Files[1].Content), "    server:", "    tls-server-name: x\n    server:", 1)
			must(t, os.WriteFile(kc, []byte(edit), 0o644))
			must(t, os.Chmod(kc, 0o644))
			mustSync(t, d, want)
			fi, err := os.Stat(kc)
			must(t, err)
			b, _ := os.ReadFile(kc)
			if fi.Mode().Perm() != 0o600 || strings.Contains(string(b), "tls-server-name") != (policy == PolicyReport) {
				t.Fatalf("edited, world-readable: mode %s, edit kept %v", fi.Mode().Perm(), strings.Contains(string(b), "tls-server-name"))
			}
		})
	}
}
