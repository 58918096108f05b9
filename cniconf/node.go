package cniconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// Policy is what happens to a hand-edited (Drifted) file.
type Policy string

// The --on-drift policies.
const (
	PolicyReport  Policy = "report"
	PolicyEnforce Policy = "enforce"
)

// Action is what Sync did to a file.
type Action string

// The actions, which the agent turns into events.
const (
	ActionNone     Action = ""
	ActionWritten  Action = "written"  // Missing, Outdated or Corrupt put right
	ActionRotated  Action = "rotated"  // the token replaced (StaleToken, or inside a kept edit)
	ActionRestored Action = "restored" // a hand edit backed up and replaced (enforce)
)

// FileStatus is one managed file's state, as drift -o json prints it.
type FileStatus struct {
	Path         string   `json:"path"`
	State        State    `json:"state"`
	ChangedPaths []string `json:"changedPaths"`
	Diff         string   `json:"diff"`
	Backup       string   `json:"backup"`
	Message      string   `json:"message,omitempty"`
	// Found and FoundPaths are the state and changed paths before Sync
	// acted; Action is what it did; WouldChange says a write is due (dry run).
	Found       State    `json:"-"`
	FoundPaths  []string `json:"-"`
	Action      Action   `json:"-"`
	WouldChange bool     `json:"-"`
	// SettleFor is set when a corrupt file changed moments ago: a writer may
	// be half way through (truncate, then write), so nothing is done yet.
	SettleFor time.Duration `json:"-"`
}

// Dir is the node's CNI directory with the agent's backup and state
// directories and its drift policy.
type Dir struct {
	NetDir      string
	BackupDir   string
	StateDir    string
	Policy      Policy
	BackupsKept int
	Now         func() time.Time
	// Settle is how long a corrupt file must have been left alone before it
	// is replaced. An editor that truncates and then writes leaves an empty
	// or partial file for a moment; replacing it then would lose the edit.
	// Zero (--once) acts at once.
	Settle time.Duration
}

func (d *Dir) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Check reports the state of every desired file and writes nothing.
func (d *Dir) Check(want *Desired) []FileStatus {
	out := make([]FileStatus, 0, len(want.Files))
	for _, f := range want.Files {
		st, _, _ := d.inspect(f, want)
		out = append(out, st)
	}
	return out
}

// Sync puts every desired file right as the state table says, and returns
// what it found and did. With dryRun it writes nothing but says what would
// change. An error leaves a file as it was; the other files are still synced.
func (d *Dir) Sync(want *Desired, dryRun bool) ([]FileStatus, error) {
	var errs []error
	out := make([]FileStatus, 0, len(want.Files))
	for _, f := range want.Files {
		st, disk, j := d.inspect(f, want)
		if err := d.act(&st, f, disk, j, dryRun); err != nil {
			errs = append(errs, err)
			st.Message = Redact(err.Error(), want.Token)
		}
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}

// inspect reads one file and classifies it.
func (d *Dir) inspect(f *File, want *Desired) (FileStatus, []byte, judgement) {
	path := filepath.Join(d.NetDir, f.Name)
	disk, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		j := judgement{state: Error, reason: fmt.Sprintf("read %s: %v", path, err)}
		return FileStatus{Path: path, State: Error, ChangedPaths: []string{}, Message: j.reason}, nil, j
	}
	rec, err := LoadRecord(d.StateDir, f.Name)
	if err != nil {
		j := judgement{state: Error, reason: err.Error()}
		return FileStatus{Path: path, State: Error, ChangedPaths: []string{}, Message: j.reason}, disk, j
	}
	j := classify(disk, exists, f, rec)
	st := FileStatus{Path: path, State: j.state, ChangedPaths: j.changed, Message: j.reason}
	if st.ChangedPaths == nil {
		st.ChangedPaths = []string{}
	}
	if j.state != InSync {
		tokens := []string{want.Token}
		if exists {
			if snap, err := f.parse(disk, f.tokenFields); err == nil {
				tokens = append(tokens, snap.tokens...)
			}
		}
		st.Diff = UnifiedDiff(disk, f.Content, tokens...)
	}
	if f.Kind == KindConf && j.state == InSync {
		if first := d.firstConf(); first != "" && first != f.Name {
			st.State = Shadowed
			st.Message = fmt.Sprintf("%s sorts before %s, so the container runtime loads it instead", first, f.Name)
		}
	}
	return st, disk, j
}

// firstConf is the file a libcni-based runtime (containerd, CRI-O) loads from
// the directory: the first by name with a CNI extension.
// settling is how much longer a file that just changed should be left alone.
func (d *Dir) settling(f *File) time.Duration {
	if d.Settle <= 0 {
		return 0
	}
	fi, err := os.Lstat(filepath.Join(d.NetDir, f.Name))
	if err != nil {
		return 0
	}
	if age := d.now().Sub(fi.ModTime()); age < d.Settle {
		return d.Settle - age
	}
	return 0
}

func (d *Dir) firstConf() string {
	files, err := libcni.ConfFiles(d.NetDir, ConfExtensions)
	if err != nil || len(files) == 0 {
		return ""
	}
	slices.Sort(files)
	return filepath.Base(files[0])
}

// act carries out the state table's action for one file.
func (d *Dir) act(st *FileStatus, f *File, disk []byte, j judgement, dryRun bool) error {
	var write []byte
	var backup, record bool
	action := ActionWritten
	switch j.state {
	case Missing, Outdated:
		write, record = f.Content, true
	case StaleToken:
		write, record, action = f.Content, true, ActionRotated
	case Corrupt:
		if wait := d.settling(f); wait > 0 {
			st.SettleFor = wait
			st.Message = "changed moments ago; waiting for the writer to finish"
			return nil
		}
		write, backup, record = f.Content, true, true
	case Drifted:
		if d.Policy == PolicyEnforce {
			write, backup, record, action = f.Content, true, true, ActionRestored
		} else if j.tokenStale {
			action = ActionRotated
			merged, ok := mergeToken(disk, f)
			if !ok {
				st.Message = "the edited file's token could not be replaced without touching the edit; the file is left as it is"
				return nil
			}
			write = merged
		}
	case InSync:
		record = true
	}
	if write != nil {
		st.WouldChange = true
	}
	if dryRun {
		return nil
	}
	path := filepath.Join(d.NetDir, f.Name)
	if write != nil {
		// A node whose CNI directory is gone altogether is repaired too.
		if err := os.MkdirAll(d.NetDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d.NetDir, err)
		}
	}
	if backup && disk != nil {
		b, err := Backup(d.BackupDir, f.Name, disk, d.now(), d.BackupsKept)
		if err != nil {
			return err
		}
		st.Backup = b
	}
	if write != nil {
		written, err := WriteAtomic(path, write, f.Mode)
		if err != nil {
			return err
		}
		if written {
			st.Action = action
		}
	}
	if record {
		return d.remember(f)
	}
	return nil
}

// remember saves the record for f unless it already says the same.
func (d *Dir) remember(f *File) error {
	rec, err := newRecord(f, d.now())
	if err != nil {
		return err
	}
	old, err := LoadRecord(d.StateDir, f.Name)
	if err == nil && old.sameAs(rec) {
		return nil
	}
	return saveRecord(d.StateDir, rec)
}

// TokensOnDisk are the distinct tokens the node's files hold now: the ones
// the CNI plugin will present to the API server.
func (d *Dir) TokensOnDisk(want *Desired) []string {
	var out []string
	for _, f := range want.Files {
		disk, err := os.ReadFile(filepath.Join(d.NetDir, f.Name))
		if err != nil {
			continue
		}
		snap, err := f.parse(disk, f.tokenFields)
		if err != nil {
			continue
		}
		for _, t := range snap.tokens {
			if t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}
