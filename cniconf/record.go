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
// A write is recorded in two steps so that the record is right at every
// instant, also when the process is killed between the two: first the
// intended content is saved as Pending, next to what was written before
// (Written); then the file is renamed into place; then Pending becomes
// Written. A file equal to either is the agent's own.
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

// recordV1 is the format written before RecordVersion 2.
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

// LoadRecord reads the record of a file of netDir; no record is (nil, nil).
// A version 1 record (flat in the state directory, from before records were
// kept per CNI directory) is taken as this directory's when it has none of
// its own: it was written by the agent of the node's one CNI directory. It is
// moved into place by the next save.
func LoadRecord(stateDir, netDir, name string) (*Record, error) {
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

func decodeRecord(data []byte) (*Record, bool) {
	var probe struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil, false
	}
	switch probe.Version {
	case 0: // version 1 wrote no version field
		var v1 recordV1
		if json.Unmarshal(data, &v1) != nil || len(v1.Content) == 0 {
			return nil, false
		}
		snap := &Snapshot{At: v1.WrittenAt, TokenFields: v1.TokenFields, Content: v1.Content}
		var doc map[string]json.RawMessage
		if json.Unmarshal(v1.Content, &doc) == nil && len(doc) == 1 && doc["cluster"] != nil {
			snap.Layout = legacyKubeconfig
		}
		return &Record{Version: RecordVersion, File: v1.File, Written: snap}, true
	case RecordVersion:
		var r Record
		if json.Unmarshal(data, &r) != nil {
			return nil, false
		}
		return &r, true
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
	if _, err := WriteAtomic(recordPath(stateDir, r.NetDir, r.File), data, 0o600); err != nil {
		return fmt.Errorf("save state record: %w (check --state-dir)", err)
	}
	if err := os.Remove(legacyRecordPath(stateDir, r.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove version 1 state record: %w", err)
	}
	return nil
}
