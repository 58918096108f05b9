package cniconf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// desiredMTU builds the v3.32 fixture's files for dir with veth_mtu set.
func desiredMTU(t *testing.T, dir, mtu string, env ...string) *Desired {
	t.Helper()
	data := fixtureData(t, "calico-config-v3.32.yaml")
	data["veth_mtu"] = mtu
	e := map[string]string{}
	for k, v := range clusterEnv {
		e[k] = v
	}
	for i := 0; i+1 < len(env); i += 2 {
		e[env[i]] = env[i+1]
	}
	in := goldenInputs(data, e)
	in.NetDir = dir
	want, err := BuildDesired(in, "")
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func newTestDir(t *testing.T) *Dir {
	t.Helper()
	return &Dir{NetDir: t.TempDir(), BackupDir: t.TempDir(), StateDir: t.TempDir(), Policy: PolicyReport}
}

func confState(t *testing.T, d *Dir, want *Desired) FileStatus {
	t.Helper()
	for _, st := range d.Check(want) {
		if filepath.Base(st.Path) == want.Conf().Name {
			return st
		}
	}
	t.Fatal("no conf in the report")
	return FileStatus{}
}

func mustSync(t *testing.T, d *Dir, want *Desired) []Outcome {
	t.Helper()
	st, err := d.Sync(want, false)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return st
}

// TestKilledBetweenFileAndRecord: a run killed after its file was renamed
// into place but before its record was completed leaves a pending record;
// the file is still recognised as the agent's own, at either side of the
// rename.
func TestKilledBetweenFileAndRecord(t *testing.T) {
	for _, tc := range []struct {
		name       string
		renamed    bool // the killed run's file reached the disk
		wantBefore State
	}{
		{name: "killed before the rename", renamed: false},
		{name: "killed after the rename", renamed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			a, b, c := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460"), desiredMTU(t, d.NetDir, "1480")
			mustSync(t, d, a)
			// The killed run wanted b: its files are staged and its
			// intent is recorded ...
			steps := []*step{d.planFile(b.Conf(), b, false), d.planFile(b.Files[1], b, false)}
			if err := d.stageWrites(steps); err != nil {
				t.Fatal(err)
			}
			for _, s := range steps {
				if s.record {
					if err := d.recordIntent(b, s, d.now()); err != nil {
						t.Fatal(err)
					}
				}
			}
			// ... and, maybe, its files renamed into place; then it died.
			if tc.renamed {
				if err := d.writeFiles(steps); err != nil {
					t.Fatal(err)
				}
			}
			// The next run, with yet other inputs, finds its own write.
			if st := confState(t, d, c); st.State != Outdated {
				t.Fatalf("after a run killed %s: %s %v, want Outdated", tc.name, st.State, st.ChangedPaths)
			}
			if st := mustSync(t, d, c)[0]; st.Action != ActionWritten {
				t.Errorf("%s: %+v, want written", st.Path, st)
			}
			if st := confState(t, d, c); st.State != InSync {
				t.Fatalf("after the next run: %s", st.State)
			}
			rec, err := LoadRecord(d.StateDir, d.NetDir, c.Conf().Name)
			if err != nil || rec == nil || rec.Pending != nil || rec.Written == nil {
				t.Fatalf("record after a complete run: %+v %v", rec, err)
			}
		})
	}
}

// TestHandEditAfterPendingRecordIsDrifted: the pending record makes the
// intended content the agent's; anything else is still a hand edit.
func TestHandEditAfterPendingRecordIsDrifted(t *testing.T) {
	d := newTestDir(t)
	a, b := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460")
	mustSync(t, d, a)
	s := d.planFile(b.Conf(), b, false)
	if err := d.recordIntent(b, s, d.now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.NetDir, a.Conf().Name)
	edited := strings.Replace(string(a.Conf().Content), `"log_level": "info"`, `"log_level": "debug"`, 1)
	if edited == string(a.Conf().Content) {
		t.Fatal("fixture lacks the log level")
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := confState(t, d, b); st.State != Drifted {
		t.Fatalf("hand edit: %s, want Drifted", st.State)
	}
}

// TestVersion1RecordIsMigrated: a node upgraded from the release that wrote
// flat version 1 records keeps telling Outdated from Drifted.
func TestVersion1RecordIsMigrated(t *testing.T) {
	d := newTestDir(t)
	a, b := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460", "KUBERNETES_SERVICE_PORT", "6443")
	for _, f := range a.Files {
		if err := os.WriteFile(filepath.Join(d.NetDir, f.Name), f.Content, 0o600); err != nil {
			t.Fatal(err)
		}
		// What the previous release wrote: <state>/<name>.json, a
		// kubeconfig's as its cluster alone.
		snap, err := snapshotOf(f, fixedTime(0))
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind == KindKubeconfig {
			k, err := ParseKubeconfig(f.Content)
			if err != nil {
				t.Fatal(err)
			}
			snap.Content, _ = json.Marshal(k.legacyMeaning())
		}
		v1, err := json.MarshalIndent(map[string]any{"file": f.Name, "writtenAt": snap.At, "tokenFields": snap.TokenFields, "content": snap.Content}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.StateDir, f.Name+".json"), v1, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range d.Check(b) {
		if st.State != Outdated {
			t.Fatalf("%s with a version 1 record: %s %v, want Outdated", st.Path, st.State, st.ChangedPaths)
		}
	}
	mustSync(t, d, b)
	if _, err := os.Stat(filepath.Join(d.StateDir, a.Conf().Name+".json")); !os.IsNotExist(err) {
		t.Errorf("version 1 record still there: %v", err)
	}
	rec, err := LoadRecord(d.StateDir, d.NetDir, b.Conf().Name)
	if err != nil || rec == nil || rec.Version != RecordVersion {
		t.Fatalf("migrated record: %+v %v", rec, err)
	}
	if st := confState(t, d, desiredMTU(t, d.NetDir, "1480")); st.State != Outdated {
		t.Fatalf("after migration: %s, want Outdated", st.State)
	}
}

// TestRecordsAreKeptPerDirectory: a trial in a scratch directory never reads
// or changes the record of another CNI directory.
func TestRecordsAreKeptPerDirectory(t *testing.T) {
	state := t.TempDir()
	node := &Dir{NetDir: t.TempDir(), BackupDir: t.TempDir(), StateDir: state}
	scratch := &Dir{NetDir: t.TempDir(), BackupDir: t.TempDir(), StateDir: state}
	mustSync(t, node, desiredMTU(t, node.NetDir, "1400"))
	// The scratch directory holds a copy of the node's file: without a
	// record of its own, it is a file the tool did not write.
	want := desiredMTU(t, scratch.NetDir, "1460")
	src, err := os.ReadFile(filepath.Join(node.NetDir, want.Conf().Name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch.NetDir, want.Conf().Name), src, 0o600); err != nil {
		t.Fatal(err)
	}
	if st := confState(t, scratch, want); st.State != Drifted {
		t.Fatalf("scratch copy: %s, want Drifted", st.State)
	}
	if recordDir(state, node.NetDir) == recordDir(state, scratch.NetDir) {
		t.Fatal("two directories share one record directory")
	}
}

// TestUnwritableStateDirWritesNothing: a state directory that cannot take
// the record stops the run before any file changes.
func TestUnwritableStateDirWritesNothing(t *testing.T) {
	d := newTestDir(t)
	a, b := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460")
	mustSync(t, d, a)
	before, err := os.ReadFile(filepath.Join(d.NetDir, a.Conf().Name))
	if err != nil {
		t.Fatal(err)
	}
	// A regular file where the state directory should be: every write
	// into it fails, as on a full or read-only file system (and for root,
	// whom modes do not stop).
	blocked := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.StateDir = blocked
	st, err := d.Sync(b, false)
	if err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("sync with a blocked state dir: %v, want an error naming --state-dir", err)
	}
	for _, s := range st {
		if s.State != Error || s.Action != ActionNone {
			t.Errorf("%s: %s %q", s.Path, s.State, s.Action)
		}
	}
	after, _ := os.ReadFile(filepath.Join(d.NetDir, a.Conf().Name))
	if string(after) != string(before) {
		t.Fatal("the conf changed although its record could not be written")
	}
}

// TestUnwritableBackupDirWritesNothing: a backup that cannot be made stops
// the run before the hand edit is replaced.
func TestUnwritableBackupDirWritesNothing(t *testing.T) {
	d := newTestDir(t)
	d.Policy = PolicyEnforce
	a := desiredMTU(t, d.NetDir, "1400")
	mustSync(t, d, a)
	path := filepath.Join(d.NetDir, a.Conf().Name)
	edit := strings.Replace(string(a.Conf().Content), `"log_level": "info"`, `"log_level": "debug"`, 1)
	if err := os.WriteFile(path, []byte(edit), 0o600); err != nil {
		t.Fatal(err)
	}
	d.BackupDir = filepath.Join(path, "backups") // below a regular file
	if _, err := d.Sync(a, false); err == nil || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("sync with a blocked backup dir: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != edit {
		t.Fatal("the hand edit was replaced without a backup")
	}
}

// TestTemporaryFilesOfKilledWritersAreRemoved: only the temporary names of
// the managed files go.
func TestTemporaryFilesOfKilledWritersAreRemoved(t *testing.T) {
	d := newTestDir(t)
	a := desiredMTU(t, d.NetDir, "1400")
	mustSync(t, d, a)
	stale := []string{"." + a.Conf().Name + "8731298", ".calico-kubeconfig12"}
	keep := []string{".10-calico.conflist.swp", ".10-calico.conflistabc", ".other123", "99-other.conflist"}
	for _, n := range append(slices.Clone(stale), keep...) {
		if err := os.WriteFile(filepath.Join(d.NetDir, n), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recTemp := filepath.Join(recordDir(d.StateDir, d.NetDir), "."+a.Conf().Name+".json42")
	pointTemp := filepath.Join(recordDir(d.StateDir, d.NetDir), "."+rollbackName+"977")
	for _, p := range []string{recTemp, pointTemp} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustSync(t, d, a)
	if _, err := os.Stat(pointTemp); !os.IsNotExist(err) {
		t.Errorf("rollback point temp left behind")
	}
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join(d.NetDir, n)); !os.IsNotExist(err) {
			t.Errorf("%s left behind", n)
		}
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(d.NetDir, n)); err != nil {
			t.Errorf("%s removed: %v", n, err)
		}
	}
	if _, err := os.Stat(recTemp); !os.IsNotExist(err) {
		t.Errorf("record temp left behind")
	}
}

// TestStaleTokenNamesTheTokenPaths: a StaleToken file says where the token
// sits, in the conf (seed era) and in the kubeconfig.
func TestStaleTokenNamesTheTokenPaths(t *testing.T) {
	d := newTestDir(t)
	a := desiredIn(t, d.NetDir, "calico-config-v2.6-kubeadm.yaml")
	mustSync(t, d, a)
	for _, f := range a.Files {
		f.Content = []byte(strings.ReplaceAll(string(f.Content), testToken, testToken+"x"))
		f.token += "x"
	}
	got := map[string][]string{}
	for _, st := range d.Check(a) {
		if st.State != StaleToken {
			t.Errorf("%s: %s, want StaleToken", st.Path, st.State)
		}
		got[filepath.Base(st.Path)] = st.ChangedPaths
	}
	if p := got[DefaultKubeconfigName]; !slices.Equal(p, []string{"users.0.user.token"}) {
		t.Errorf("kubeconfig changed paths %v", p)
	}
	if p := got[a.Conf().Name]; !slices.Equal(p, []string{"policy.k8s_auth_token"}) {
		t.Errorf("conf changed paths %v", p)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestKeptFileRecordedAfterTheWrites: the record of a file kept as it is
// (here a kubeconfig install-cni wrote, adopted) waits until the files are
// written: nothing before the rename that the write does not need.
func TestKeptFileRecordedAfterTheWrites(t *testing.T) {
	d := newTestDir(t)
	want := desiredMTU(t, d.NetDir, "1400")
	var kc *File
	for _, f := range want.Files {
		if f.Kind == KindKubeconfig {
			kc = f
		}
	}
	if err := os.WriteFile(filepath.Join(d.NetDir, kc.Name), kc.Content, 0o600); err != nil {
		t.Fatal(err)
	}
	var atRename *Record
	d.Renaming = func(string) func(bool) {
		rec, err := LoadRecord(d.StateDir, d.NetDir, kc.Name)
		if err != nil {
			t.Error(err)
		}
		atRename = rec
		return func(bool) {}
	}
	mustSync(t, d, want)
	if atRename != nil {
		t.Error("the kept kubeconfig was recorded before the conf was written")
	}
	if rec, err := LoadRecord(d.StateDir, d.NetDir, kc.Name); err != nil || rec == nil || rec.Written == nil {
		t.Fatalf("the kept kubeconfig is not recorded after the pass: %+v %v", rec, err)
	}
}
