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

// staged is a new version of a file written beside it (a temporary file in
// its directory, given its mode), not yet in place.
type staged struct {
	path string
	pf   *renameio.PendingFile
	// id is the temporary file's device and inode: the file's, once
	// renamed into place.
	id fileID
}

// stage writes data to a temporary file in path's directory with mode.
func stage(path string, data []byte, mode os.FileMode) (*staged, error) {
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(mode))
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	s := &staged{path: path, pf: pf}
	if _, err := pf.Write(data); err != nil {
		s.discard()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	fi, err := pf.Stat()
	if err != nil {
		s.discard()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	s.id = idOf(fi)
	s.id.Ctime = 0 // a rename changes it
	return s, nil
}

// discard removes the temporary file unless it was renamed into place.
func (s *staged) discard() { _ = s.pf.Cleanup() }

// commit fsyncs the temporary file, renames it over path and fsyncs the
// directory; renaming, when set, is told just before the rename, and the
// function it returns whether the rename happened.
func (s *staged) commit(renaming func(path string) func(renamed bool)) (bool, error) {
	defer s.discard()
	var renamed func(bool)
	if renaming != nil {
		renamed = renaming(s.path)
	}
	err := s.pf.CloseAtomicallyReplace()
	if renamed != nil {
		// renameio renames last: an error means the target is untouched.
		renamed(err == nil)
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return true, fmt.Errorf("write %s: %w", s.path, err)
	}
	return true, nil
}

// renameInPlace writes data to a temporary file in path's directory,
// fsyncs it, gives it mode, renames it over path and fsyncs the directory.
func renameInPlace(path string, data []byte, mode os.FileMode, renaming func(path string) func(renamed bool)) (bool, error) {
	s, err := stage(path, data, mode)
	if err != nil {
		return false, err
	}
	return s.commit(renaming)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
