package cniconf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// WriteAtomic replaces path with data so that a reader at any moment sees the
// old file or the new one, never a part. The temporary file lives in the same
// directory under a name ending in digits (".10-calico.conflist123"), which
// no runtime loads; it is fsynced and given its mode before the rename, and
// the directory is fsynced after it. A symlink at path is replaced, not
// followed. Nothing is written when path is a regular file that already holds
// exactly data with that mode; the result says whether a write happened.
//
// The temporary file must be in the target's directory, not only for the
// rename to be atomic: containerd 1.6 reloads its CNI config on a RENAME
// event in the directory and ignores CREATE, so a file moved in from
// elsewhere would not be loaded until some other event came.
func WriteAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	return writeAtomic(path, data, mode, nil)
}

// writeAtomic is WriteAtomic telling renaming, when set, just before the
// rename, and the function it returns whether the rename happened.
func writeAtomic(path string, data []byte, mode os.FileMode, renaming func(path string) func(renamed bool)) (bool, error) {
	if cur, err := readManaged(path); err == nil && cur.data != nil && cur.mode.Perm() == mode && bytes.Equal(cur.data, data) {
		return false, nil
	}
	return replaceAtomic(path, data, mode, renaming)
}

// replaceAtomic is writeAtomic even when path already holds data: the file
// put in place is a new one, the agent's own.
func replaceAtomic(path string, data []byte, mode os.FileMode, renaming func(path string) func(renamed bool)) (bool, error) {
	return renameInPlace(path, data, mode, renaming)
}

// DefaultBackupsKept is how many backups of each file are kept.
const DefaultBackupsKept = 20

// Backup copies data (the file about to be replaced, or a hand edit first
// seen) into dir as <name>.<UTC time>.bak, mode 0600 since it may hold a
// token, and prunes the oldest backups of that name beyond keep. When the
// newest backup already holds data, that one is returned and nothing is
// written: an edit that persists is backed up once.
//
// The backup just made is never pruned, whatever the clock says: a node
// clock set back would otherwise name it oldest and delete it at once.
func Backup(dir, name string, data []byte, now time.Time, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup dir: %w (set --backup-dir to a writable directory)", err)
	}
	mine, err := backupsOf(dir, name)
	if err != nil {
		return "", err
	}
	if newest := newestBackup(dir, mine); newest != "" {
		if cur, err := readManaged(newest); err == nil && cur.data != nil && bytes.Equal(cur.data, data) {
			return newest, nil
		}
	}
	stamp := now.UTC().Format("20060102T150405.000000000Z")
	path := filepath.Join(dir, name+"."+stamp+".bak")
	for i := 1; exists(path); i++ {
		path = filepath.Join(dir, fmt.Sprintf("%s.%s-%d.bak", name, stamp, i))
	}
	if _, err := WriteAtomic(path, data, 0o600); err != nil {
		return "", fmt.Errorf("back up %s: %w (check --backup-dir)", name, err)
	}
	// A backup that could not be pruned is still a backup: the next one
	// prunes again, and the write it protects goes ahead.
	_ = pruneBackups(dir, append(mine, filepath.Base(path)), filepath.Base(path), keep)
	return path, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// backupsOf lists the backups of one file name, oldest first by the time
// in their names.
func backupsOf(dir, name string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var mine []string
	for _, e := range entries {
		// <name>.<stamp>.bak; "10-calico.conf." is no prefix of a
		// 10-calico.conflist backup, so each file keeps its own.
		if rest, ok := strings.CutPrefix(e.Name(), name+"."); ok && strings.HasSuffix(rest, ".bak") && e.Type().IsRegular() {
			mine = append(mine, e.Name())
		}
	}
	sort.Strings(mine)
	return mine, nil
}

// newestBackup is the backup written last, by modification time (a name
// carries the clock of the moment, which may have been set back since).
func newestBackup(dir string, names []string) string {
	var newest string
	var at time.Time
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(dir, n))
		if err == nil && (newest == "" || !fi.ModTime().Before(at)) {
			newest, at = filepath.Join(dir, n), fi.ModTime()
		}
	}
	return newest
}

// pruneBackups removes the oldest backups beyond keep, never the one named
// made.
func pruneBackups(dir string, names []string, made string, keep int) error {
	if keep <= 0 {
		keep = DefaultBackupsKept
	}
	sort.Strings(names)
	excess := len(names) - keep
	for _, n := range names {
		if excess <= 0 {
			break
		}
		if n == made {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("prune backups: %w", err)
		}
		excess--
	}
	return nil
}
