package cniconf

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// lock takes the state directory's lock for this CNI directory, so that a
// --once run while the agent works (or two agents by mistake) never
// interleave their writes and records. The lock is an flock on a file: the
// kernel releases it when its holder dies, so a killed run never leaves it
// taken.
func (d *Dir) lock() (func(), error) {
	if d.StateDir == "" {
		return func() {}, nil
	}
	dir := recordDir(d.StateDir, d.NetDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w (set --state-dir to a writable directory)", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w (set --state-dir to a writable directory)", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	return func() { _ = f.Close() }, nil
}

// probeWritable creates and removes a file in the state directory: one
// that is read-only, or full to the last inode, fails here and not half way
// through a write. Sync asks before a pass that changes anything; a pass
// that finds the node as it should be leaves the disk alone.
func (d *Dir) probeWritable() error {
	if d.StateDir == "" {
		return nil
	}
	f, err := os.CreateTemp(recordDir(d.StateDir, d.NetDir), ".probe")
	if err != nil {
		return fmt.Errorf("state directory: %w (set --state-dir to a writable directory)", err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// tempSuffix is how WriteAtomic's temporary files end: the target's name
// after a dot, then digits.
var tempSuffix = regexp.MustCompile(`^[0-9]+$`)

// removeTemps deletes the temporary files that writers killed between
// creating and renaming them left behind (".10-calico.conflist123"). Runtimes
// do not load them, but they would pile up. Only names of the files this
// directory manages are touched, and only under the lock, when no writer of
// ours is at work.
func (d *Dir) removeTemps(want *Desired) {
	removeTempsOf(d.NetDir, func(name string) bool {
		for _, f := range want.Files {
			if isTempOf(name, f.Name) {
				return true
			}
		}
		return false
	})
	if d.StateDir != "" {
		removeTempsOf(recordDir(d.StateDir, d.NetDir), func(name string) bool {
			if isTempOf(name, "probe") {
				return true // a probeWritable of a killed run
			}
			if isTempOf(name, rollbackName) {
				return true // a rollback point's write of a killed run
			}
			for _, f := range want.Files {
				if isTempOf(name, f.Name+".json") {
					return true
				}
			}
			return false
		})
	}
}

func isTempOf(name, target string) bool {
	rest, ok := strings.CutPrefix(name, "."+target)
	return ok && tempSuffix.MatchString(rest)
}

func removeTempsOf(dir string, ours func(string) bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() && ours(e.Name()) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
