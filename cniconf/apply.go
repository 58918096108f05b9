package cniconf

import (
	"fmt"
	"maps"
	"os"
	"strings"
	"time"
)

// apply carries out the planned steps in the order Sync describes.
func (d *Dir) apply(want *Desired, steps []*step) error {
	now := d.now()
	for _, s := range steps {
		if s.backup && s.backupData != nil {
			b, err := Backup(d.BackupDir, s.file.Name, s.backupData, now, d.BackupsKept)
			if err != nil {
				return fmt.Errorf("%w; nothing was written", err)
			}
			s.status.Backup = b
		}
	}
	// Each new version is written to its temporary file first, so that the
	// record of the write can name the file the rename will put in place.
	defer discard(steps)
	if err := d.stageWrites(steps); err != nil {
		return fmt.Errorf("%w; nothing was written", err)
	}
	for _, s := range steps {
		if !s.record || s.write == nil {
			continue
		}
		if err := d.recordIntent(want, s, now); err != nil {
			return fmt.Errorf("%w; nothing was written", err)
		}
	}
	if err := d.writeFiles(steps); err != nil {
		return err
	}
	for _, s := range steps {
		// A file kept as it is becomes the agent's own after the writes:
		// a run killed before has changed nothing that needed the record.
		if s.record && s.write == nil {
			if err := d.recordIntent(want, s, now); err != nil {
				return err
			}
		}
	}
	for _, s := range steps {
		if s.chmod {
			replaced, err := restoreMode(s.status.Path, d.Renaming)
			if err != nil {
				return err
			}
			closed := fmt.Sprintf("set to %04o", FileMode)
			if replaced {
				closed = fmt.Sprintf("replaced by a copy the agent owns, mode %04o (the agent may not change another user's file)", FileMode)
			}
			s.status.Message = joinMessage(s.status.Message, closed)
		}
	}
	for _, s := range steps {
		if s.record && s.write != nil {
			// A failure here is harmless: the pending record matches
			// the file, which is still recognised as the agent's.
			if err := d.completeRecord(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageWrites writes each new version to its temporary file.
func (d *Dir) stageWrites(steps []*step) error {
	for _, s := range steps {
		if s.write == nil {
			continue
		}
		// A node whose CNI directory is gone altogether is repaired too.
		if err := os.MkdirAll(d.NetDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d.NetDir, err)
		}
		staged, err := stage(s.status.Path, s.write, s.file.Mode)
		if err != nil {
			return err
		}
		s.staged = staged
	}
	return nil
}

// discard removes the temporary files of the steps that were not renamed
// into place.
func discard(steps []*step) {
	for _, s := range steps {
		if s.staged != nil {
			s.staged.discard()
		}
	}
}

// writeFiles writes the files that need it, what they refer to first. When
// one fails, the error names the files already changed.
func (d *Dir) writeFiles(steps []*step) error {
	var changed []string
	for _, s := range writeOrder(steps) {
		if s.write == nil {
			continue
		}
		written, err := s.staged.commit(d.Renaming)
		if written {
			// Renamed into place, even when the directory's fsync then
			// failed: the file changed, and that is reported.
			s.status.Action = s.action
			changed = append(changed, s.status.Path)
			if s.modeWrong {
				s.status.Message = joinMessage(s.status.Message, fmt.Sprintf("rewritten with mode %04o", s.file.Mode))
			}
		}
		if err != nil {
			return writeFailed(err, changed)
		}
	}
	return nil
}

func writeFailed(err error, changed []string) error {
	if len(changed) == 0 {
		return fmt.Errorf("%w; nothing was written", err)
	}
	return fmt.Errorf("%w; already written: %s", err, strings.Join(changed, ", "))
}

// writeOrder puts the kubeconfig before the conf that points at it, so a
// runtime never loads a conf whose kubeconfig is not yet in place.
func writeOrder(steps []*step) []*step {
	out := make([]*step, 0, len(steps))
	for _, kind := range []Kind{KindKubeconfig, KindConf} {
		for _, s := range steps {
			if s.file.Kind == kind {
				out = append(out, s)
			}
		}
	}
	return out
}

// recordIntent saves, before the file changes, that s.write is about to be
// in place. What the file holds now stays recorded as written when it is
// the agent's own (a pending write of a killed run that did reach the disk
// is confirmed here). A file recorded as it is (InSync) is simply written
// down.
func (d *Dir) recordIntent(want *Desired, s *step, now time.Time) error {
	snap, err := snapshotOf(s.file, now)
	if err != nil {
		return err
	}
	old, err := loadRecord(d.StateDir, d.NetDir, s.file.Name)
	if err != nil {
		return err
	}
	old = old.settled(s.od.exists, s.od.id)
	rec := &Record{NetDir: d.NetDir, File: s.file.Name, Facts: want.Facts, Revision: want.Revision}
	if old != nil {
		rec.Written = old.Written
		if old.Pending.matches(s.disk, s.file.parse) && !old.Written.matches(s.disk, s.file.parse) {
			rec.Written = old.Pending
		}
	}
	if s.write == nil {
		rec.Written = snap
		if old != nil && old.Pending == nil && old.Written.same(snap) && maps.Equal(old.Facts, want.Facts) && old.Revision == want.Revision {
			s.record = false
			return nil // nothing new to say
		}
	} else {
		rec.Pending = snap
		if s.staged != nil && s.staged.id.known() {
			rec.PendingFile = &s.staged.id
			if s.od.exists {
				rec.Replaces = &s.od.id
			}
		}
	}
	s.prev = rec
	return saveRecord(d.StateDir, rec)
}

// completeRecord marks the pending write of s as done. Where the record
// names the file renamed into place, the file says so itself (settled) and
// nothing is saved.
func (d *Dir) completeRecord(s *step) error {
	rec := s.prev
	if rec == nil || rec.Pending == nil {
		return nil
	}
	named := rec.PendingFile != nil
	s.prev = rec.done()
	if named {
		return nil
	}
	return saveRecord(d.StateDir, s.prev)
}
