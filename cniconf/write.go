package cniconf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// WriteAtomic replaces path with data so that a reader at any moment sees the
// old file or the new one, never a part. The temporary file lives in the same
// directory under a name ending in digits (".10-calico.conflist123"), which
// no runtime loads; it is fsynced and given its mode before the rename, and
// the directory is fsynced after it. A symlink at path is replaced, not
// followed. Nothing is written when path is a regular file that already holds
// exactly data with that mode; the result says whether a write happened.
func WriteAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == mode {
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			return false, nil
		}
	}
	dir := filepath.Dir(path)
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(mode))
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// DefaultBackupsKept is how many backups of each file are kept.
const DefaultBackupsKept = 20

// Backup copies data (the file about to be replaced) into dir as
// <name>.<UTC time>.bak, mode 0600 since it may hold a token, and prunes the
// oldest backups of that name beyond keep.
func Backup(dir, name string, data []byte, now time.Time, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup dir: %w", err)
	}
	stamp := now.UTC().Format("20060102T150405.000000000Z")
	path := filepath.Join(dir, name+"."+stamp+".bak")
	if _, err := WriteAtomic(path, data, 0o600); err != nil {
		return "", fmt.Errorf("back up %s: %w", name, err)
	}
	if err := pruneBackups(dir, name, keep); err != nil {
		return path, err
	}
	return path, nil
}

func pruneBackups(dir, name string, keep int) error {
	if keep <= 0 {
		keep = DefaultBackupsKept
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune backups: %w", err)
	}
	var mine []string
	for _, e := range entries {
		// <name>.<stamp>.bak; "10-calico.conf." is no prefix of a
		// 10-calico.conflist backup, so each file keeps its own.
		if rest, ok := strings.CutPrefix(e.Name(), name+"."); ok && strings.HasSuffix(rest, ".bak") {
			mine = append(mine, e.Name())
		}
	}
	sort.Strings(mine) // the timestamp sorts in time order
	for len(mine) > keep {
		if err := os.Remove(filepath.Join(dir, mine[0])); err != nil {
			return fmt.Errorf("prune backups: %w", err)
		}
		mine = mine[1:]
	}
	return nil
}
