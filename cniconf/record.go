package cniconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"
)

// Record is what the agent last rendered and wrote for one file, with the
// token masked. It is what tells a file that is still as written (and so
// merely Outdated when the ConfigMap moves on) from a file a person edited.
type Record struct {
	File        string          `json:"file"`
	WrittenAt   time.Time       `json:"writtenAt"`
	TokenFields []TokenField    `json:"tokenFields,omitempty"`
	Content     json.RawMessage `json:"content"`
}

func recordPath(stateDir, name string) string {
	return filepath.Join(stateDir, name+".json")
}

// LoadRecord reads the record for a file name; no record is (nil, nil).
func LoadRecord(stateDir, name string) (*Record, error) {
	if stateDir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(recordPath(stateDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		// A damaged record is no record: the file is judged without one,
		// which errs towards reporting an edit rather than overwriting it.
		return nil, nil
	}
	return &r, nil
}

// newRecord masks the token out of what is about to be written.
func newRecord(f *File, now time.Time) (*Record, error) {
	snap, err := f.parse(f.Content, f.tokenFields)
	if err != nil {
		return nil, err
	}
	content, err := json.Marshal(snap.meaning)
	if err != nil {
		return nil, fmt.Errorf("encode state record: %w", err)
	}
	return &Record{File: f.Name, WrittenAt: now.UTC(), TokenFields: f.tokenFields, Content: content}, nil
}

// sameAs reports whether two records describe the same content.
func (r *Record) sameAs(o *Record) bool {
	if r == nil || o == nil {
		return false
	}
	var a, b any
	return json.Unmarshal(r.Content, &a) == nil && json.Unmarshal(o.Content, &b) == nil &&
		reflect.DeepEqual(a, b) && reflect.DeepEqual(r.TokenFields, o.TokenFields)
}

// matches reports whether the file on disk is still what the record says was
// written, token aside.
func (r *Record) matches(disk []byte, parse func([]byte, []TokenField) (snapshot, error)) bool {
	if r == nil {
		return false
	}
	snap, err := parse(disk, r.TokenFields)
	if err != nil {
		return false
	}
	var recorded any
	if json.Unmarshal(r.Content, &recorded) != nil {
		return false
	}
	return reflect.DeepEqual(normalize(snap.meaning), recorded)
}

// saveRecord writes the record atomically, mode 0600.
func saveRecord(stateDir string, r *Record) error {
	if stateDir == "" {
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state record: %w", err)
	}
	_, err = WriteAtomic(recordPath(stateDir, r.File), data, 0o600)
	return err
}
