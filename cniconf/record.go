package cniconf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"
)

// RecordVersion is the format of the records in the state directory.
// Version 1 (one flat <name>.json per file, holding only the last written
// content) is read and migrated; see LoadRecord.
const RecordVersion = 2

// Record is what the agent knows it wrote to one file of one CNI directory,
// with the token masked. It is what tells a file that is still as written
// (and so merely Outdated when the inputs move on) from a file a person
// edited.
//
// A write is recorded before the file changes, so that the record is right
// at every instant, also when the process is killed: the intended content is
// saved as Pending, next to what was written before (Written); then the file
// is renamed into place. While it is unknown whether the rename happened, a
// file equal to either is the agent's own.
//
// Whether it happened is read off the file itself, with no second record
// written after the rename: the new version is written to its temporary file
// first, and the record names that file (PendingFile: device and inode,
// which the rename keeps) and the one it replaces (Replaces: device, inode
// and ctime). A file on disk that is PendingFile is the write done, so
// Pending is what was written and the old content is no longer the agent's
// own (a hand edit back to it is Drifted); a file that is still Replaces is
// the write not done; any other file was put there since by someone else,
// and is judged as if the write was done, which errs towards reporting an
// edit rather than overwriting it. See settled. Where the system does not
// say which file is which, Pending becomes Written by a second record saved
// after the rename.
type Record struct {
	Version int `json:"version"`
	// NetDir is the CNI directory the file lives in; records of different
	// directories never mix (a trial in a scratch directory cannot disturb
	// the agent's record).
	NetDir string `json:"netDir"`
	File   string `json:"file"`
	// Written is the content last known to be in place.
	Written *Snapshot `json:"written,omitempty"`
	// Pending is a write begun and not yet known to be done.
	Pending *Snapshot `json:"pending,omitempty"`
	// PendingFile is the file Pending's write renames into place (no
	// ctime: the rename changes it); Replaces is the file it replaces, nil
	// when there was none.
	PendingFile *fileID `json:"pendingFile,omitempty"`
	Replaces    *fileID `json:"replaces,omitempty"`
	// Facts are values of the last write that came from the node's
	// environment rather than from the cluster (node name, API address, ...).
	Facts map[string]string `json:"facts,omitempty"`
	// Source says where the inputs of the last write came from.
	Source map[string]string `json:"source,omitempty"`
	// Revision names the ConfigMap-borne inputs of the last write (see
	// Desired.Revision); "" when none was known.
	Revision string `json:"revision,omitempty"`
}

// Snapshot is one file's content with its tokens masked.
type Snapshot struct {
	At          time.Time       `json:"at"`
	TokenFields []TokenField    `json:"tokenFields,omitempty"`
	Content     json.RawMessage `json:"content"`
	// Layout is set for content in an older form: legacyKubeconfig, a
	// version 1 record of a kubeconfig, which held only its cluster.
	Layout string `json:"layout,omitempty"`
}

// legacyKubeconfig marks a version 1 kubeconfig record.
const legacyKubeconfig = "kubeconfig-cluster-v1"

// recordV1 is the format written before RecordVersion 2 (storedRecord
// reads its fields).
type recordV1 struct {
	File        string          `json:"file"`
	WrittenAt   time.Time       `json:"writtenAt"`
	TokenFields []TokenField    `json:"tokenFields,omitempty"`
	Content     json.RawMessage `json:"content"`
}

// recordDir is where the records of one CNI directory live: a directory
// named after the CNI directory's absolute path, readable, with a hash so
// that two paths never share one.
func recordDir(stateDir, netDir string) string {
	abs, err := filepath.Abs(netDir)
	if err != nil {
		abs = netDir
	}
	sum := sha256.Sum256([]byte(abs))
	readable := strings.Trim(strings.ReplaceAll(abs, "/", "_"), "_")
	if len(readable) > 64 {
		readable = readable[len(readable)-64:]
	}
	return filepath.Join(stateDir, readable+"-"+hex.EncodeToString(sum[:4]))
}

func recordPath(stateDir, netDir, name string) string {
	return filepath.Join(recordDir(stateDir, netDir), name+".json")
}

// legacyRecordPath is where version 1 kept the record of a file.
func legacyRecordPath(stateDir, name string) string {
	return filepath.Join(stateDir, name+".json")
}

// LoadRecord reads the record of a file of netDir, settled against the file
// as it is now (see Record); no record is (nil, nil).
func LoadRecord(stateDir, netDir, name string) (*Record, error) {
	r, err := loadRecord(stateDir, netDir, name)
	if r == nil || err != nil {
		return r, err
	}
	fi, err := os.Lstat(filepath.Join(netDir, name))
	if err != nil {
		return r.settled(false, fileID{}), nil
	}
	return r.settled(true, idOf(fi)), nil
}

// loadRecord reads the record of a file of netDir as it was saved.
// A version 1 record (flat in the state directory, from before records were
// kept per CNI directory) is taken as this directory's when it has none of
// its own: it was written by the agent of the node's one CNI directory. It is
// moved into place by the next save.
func loadRecord(stateDir, netDir, name string) (*Record, error) {
	if stateDir == "" {
		return nil, nil
	}
	data, err := readSmall(recordPath(stateDir, netDir, name))
	if errors.Is(err, os.ErrNotExist) {
		data, err = readSmall(legacyRecordPath(stateDir, name))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state record of %s: %w (check --state-dir)", name, err)
	}
	r, ok := decodeRecord(data)
	if !ok {
		// A damaged record is no record: the file is judged without one,
		// which errs towards reporting an edit rather than overwriting it.
		return nil, nil
	}
	r.NetDir, r.File = netDir, name
	return r, nil
}

// maxRecordBytes bounds a record read: a record holds one CNI config twice.
const maxRecordBytes = 4 << 20

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRecordBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxRecordBytes)
	}
	return data, nil
}

// storedRecord is either format as stored: a version 2 record's fields,
// and those of version 1 (which wrote no version), decoded in one pass.
type storedRecord struct {
	Record
	WrittenAt   time.Time       `json:"writtenAt"`
	TokenFields []TokenField    `json:"tokenFields,omitempty"`
	Content     json.RawMessage `json:"content"`
}

func decodeRecord(data []byte) (*Record, bool) {
	var st storedRecord
	if json.Unmarshal(data, &st) != nil {
		return nil, false
	}
	switch st.Version {
	case 0: // version 1 wrote no version field
		if len(st.Content) == 0 {
			return nil, false
		}
		snap := &Snapshot{At: st.WrittenAt, TokenFields: st.TokenFields, Content: st.Content}
		var doc map[string]json.RawMessage
		if json.Unmarshal(st.Content, &doc) == nil && len(doc) == 1 && doc["cluster"] != nil {
			snap.Layout = legacyKubeconfig
		}
		return &Record{Version: RecordVersion, File: st.File, Written: snap}, true
	case RecordVersion:
		return &st.Record, true
	default:
		// A newer format (a downgrade): unknown, so judged as no record.
		return nil, false
	}
}

// snapshotOf masks the token out of what is about to be written.
func snapshotOf(f *File, now time.Time) (*Snapshot, error) {
	snap, err := f.parse(f.Content, f.tokenFields)
	if err != nil {
		return nil, err
	}
	content, err := json.Marshal(snap.meaning)
	if err != nil {
		return nil, fmt.Errorf("encode state record: %w", err)
	}
	return &Snapshot{At: now.UTC(), TokenFields: f.tokenFields, Content: content}, nil
}

// same reports whether two snapshots describe the same content.
func (s *Snapshot) same(o *Snapshot) bool {
	if s == nil || o == nil {
		return s == o
	}
	var a, b any
	return json.Unmarshal(s.Content, &a) == nil && json.Unmarshal(o.Content, &b) == nil &&
		reflect.DeepEqual(a, b) && reflect.DeepEqual(s.TokenFields, o.TokenFields)
}

// matches reports whether the file on disk is this content, token aside.
func (s *Snapshot) matches(disk []byte, parse func([]byte, []TokenField) (snapshot, error)) bool {
	if s == nil {
		return false
	}
	var recorded any
	if json.Unmarshal(s.Content, &recorded) != nil {
		return false
	}
	if s.Layout == legacyKubeconfig {
		k, err := ParseKubeconfig(disk)
		return err == nil && reflect.DeepEqual(normalize(k.legacyMeaning()), recorded)
	}
	snap, err := parse(disk, s.TokenFields)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(normalize(snap.meaning), recorded)
}

// settled is the record as the file on disk (exists, id) shows it to stand:
// a pending write that the file shows done is written. The record itself is
// not changed.
func (r *Record) settled(exists bool, id fileID) *Record {
	if r == nil || r.Pending == nil || r.PendingFile == nil {
		return r
	}
	switch {
	case exists && id.Dev == r.PendingFile.Dev && id.Ino == r.PendingFile.Ino:
		// The file renamed into place: done.
	case !exists && r.Replaces == nil:
		return r // still missing: not done (or the file removed since)
	case exists && r.Replaces != nil && id == *r.Replaces:
		return r // the file it was to replace, untouched: not done
	}
	return r.done()
}

// done is the record with its pending write done.
func (r *Record) done() *Record {
	c := *r
	c.Written, c.Pending, c.PendingFile, c.Replaces = r.Pending, nil, nil, nil
	return &c
}

// matches reports whether the file on disk is one the agent wrote: what
// the record says is in place, or a write that was begun.
func (r *Record) matches(disk []byte, parse func([]byte, []TokenField) (snapshot, error)) bool {
	return r != nil && (r.Written.matches(disk, parse) || r.Pending.matches(disk, parse))
}

// saveRecord writes the record atomically, mode 0600, and drops a version 1
// record of the same file, which it supersedes.
func saveRecord(stateDir string, r *Record) error {
	if stateDir == "" {
		return nil
	}
	dir := recordDir(stateDir, r.NetDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w (check --state-dir)", err)
	}
	r.Version = RecordVersion
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state record: %w", err)
	}
	// Each record is new (it holds the time of the write), so the record
	// in place is not read first to see whether it already holds it.
	if _, err := replaceAtomic(recordPath(stateDir, r.NetDir, r.File), data, 0o600, nil); err != nil {
		return fmt.Errorf("save state record: %w (check --state-dir)", err)
	}
	if err := os.Remove(legacyRecordPath(stateDir, r.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove version 1 state record: %w", err)
	}
	return nil
}
