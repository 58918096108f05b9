package cniconf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestHandRevertAfterAWriteIsDrifted: once a write is done, the content it
// replaced is no longer the agent's: a hand edit that puts it back is
// Drifted, whether made in place or by renaming a new file over the old,
// though the record of the write is saved only before the rename.
func TestHandRevertAfterAWriteIsDrifted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		revert func(path string, data []byte) error
	}{
		{name: "in place", revert: func(path string, data []byte) error {
			return os.WriteFile(path, data, 0o600)
		}},
		{name: "by rename", revert: func(path string, data []byte) error {
			tmp := filepath.Join(filepath.Dir(path), "edit.tmp")
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDir(t)
			a, b := desiredMTU(t, d.NetDir, "1400"), desiredMTU(t, d.NetDir, "1460")
			mustSync(t, d, a)
			path := filepath.Join(d.NetDir, a.Conf().Name)
			old := mustRead(t, path)
			mustSync(t, d, b)
			// The record was saved once, before the rename: it still
			// names the write as pending, and the file renamed into
			// place as the one that says it is done.
			raw, err := loadRecord(d.StateDir, d.NetDir, b.Conf().Name)
			if err != nil || raw == nil {
				t.Fatalf("record: %+v %v", raw, err)
			}
			if od, err := readManaged(path); err == nil && raw.PendingFile != nil &&
				(raw.PendingFile.Dev != od.id.Dev || raw.PendingFile.Ino != od.id.Ino) {
				t.Fatalf("the record names file %+v, the file in place is %+v", *raw.PendingFile, od.id)
			}
			if st := confState(t, d, b); st.State != InSync {
				t.Fatalf("after the write: %s", st.State)
			}
			if err := tc.revert(path, old); err != nil {
				t.Fatal(err)
			}
			if st := confState(t, d, b); st.State != Drifted {
				t.Fatalf("the content the write replaced, put back by hand %s: %s, want Drifted", tc.name, st.State)
			}
			if st := mustSync(t, d, b)[0]; st.Action != ActionNone || st.Backup == "" {
				t.Fatalf("report policy: %+v, want the edit backed up and kept", st)
			}
			if got := mustRead(t, path); string(got) != string(old) {
				t.Fatal("the hand edit was overwritten")
			}
		})
	}
}

// TestSettledRecord: what the file on disk says of a pending write.
func TestSettledRecord(t *testing.T) {
	written, pending := &Snapshot{Content: json.RawMessage(`{"a":1}`)}, &Snapshot{Content: json.RawMessage(`{"a":2}`)}
	tmp := fileID{Dev: 8, Ino: 20}
	old := fileID{Dev: 8, Ino: 10, Ctime: 1000}
	for _, tc := range []struct {
		name     string
		rec      Record
		exists   bool
		id       fileID
		wantDone bool
	}{
		{name: "the file renamed into place", rec: Record{Written: written, Pending: pending, PendingFile: &tmp, Replaces: &old},
			exists: true, id: fileID{Dev: 8, Ino: 20, Ctime: 2000}, wantDone: true},
		{name: "the file it replaces, untouched", rec: Record{Written: written, Pending: pending, PendingFile: &tmp, Replaces: &old},
			exists: true, id: old, wantDone: false},
		{name: "its inode number reused by a new file", rec: Record{Written: written, Pending: pending, PendingFile: &tmp, Replaces: &old},
			exists: true, id: fileID{Dev: 8, Ino: 10, Ctime: 3000}, wantDone: true},
		{name: "another file since", rec: Record{Written: written, Pending: pending, PendingFile: &tmp, Replaces: &old},
			exists: true, id: fileID{Dev: 8, Ino: 30, Ctime: 3000}, wantDone: true},
		{name: "no file before, none now", rec: Record{Pending: pending, PendingFile: &tmp},
			exists: false, wantDone: false},
		{name: "no file before, another now", rec: Record{Written: written, Pending: pending, PendingFile: &tmp},
			exists: true, id: fileID{Dev: 8, Ino: 30, Ctime: 3000}, wantDone: true},
		{name: "removed since", rec: Record{Written: written, Pending: pending, PendingFile: &tmp, Replaces: &old},
			exists: false, wantDone: true},
		{name: "no file named (an older release, or no inodes)", rec: Record{Written: written, Pending: pending},
			exists: true, id: fileID{Dev: 8, Ino: 20}, wantDone: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rec.settled(tc.exists, tc.id)
			if tc.wantDone {
				if got.Pending != nil || got.Written != pending || got.PendingFile != nil || got.Replaces != nil {
					t.Fatalf("%+v, want the pending write done", got)
				}
			} else if got != &tc.rec {
				t.Fatalf("%+v, want the record as saved", got)
			}
			if tc.rec.Pending != pending {
				t.Fatal("settled changed the record it was given")
			}
		})
	}
}
