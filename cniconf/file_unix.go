//go:build unix

package cniconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/google/renameio/v2"
)

// openNoFollow opens path for reading without following a link at it and
// without waiting on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// isLink reports whether openNoFollow refused a link.
func isLink(err error) bool { return errors.Is(err, syscall.ELOOP) }

// notPermitted reports whether the kernel refused to change a file's mode
// or owner.
func notPermitted(err error) bool { return errors.Is(err, syscall.EPERM) }

// ownerOf is the uid that owns a file, -1 when the system does not say.
func ownerOf(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// lockFile takes an exclusive flock on f, waiting for it.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// renameInPlace writes data to a temporary file in path's directory,
// fsyncs it, gives it mode, renames it over path and fsyncs the directory.
func renameInPlace(path string, data []byte, mode os.FileMode, renaming func(path string) func(renamed bool)) (bool, error) {
	dir := filepath.Dir(path)
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(mode))
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	var renamed func(bool)
	if renaming != nil {
		renamed = renaming(path)
	}
	err = pf.CloseAtomicallyReplace()
	if renamed != nil {
		// renameio renames last: an error means the target is untouched.
		renamed(err == nil)
	}
	if err != nil {
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
