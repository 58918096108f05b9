package cniconf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxFileBytes bounds what is read of a managed file. A CNI config is a few
// KiB; anything larger is not one, and reading it whole could exhaust the
// agent's memory limit.
const MaxFileBytes = 1 << 20

// onDisk is what is at a managed path, found without following a link and
// without blocking: a FIFO, a device or a link to /dev/zero is described,
// never read.
type onDisk struct {
	exists bool
	// data is the content of a regular file within MaxFileBytes.
	data []byte
	// odd says why the path holds no readable config ("a FIFO", "a
	// symlink to /dev/zero", "larger than 1 MiB"): Corrupt.
	odd string
	// dir is a directory at the path: Error, left alone.
	dir   bool
	mode  os.FileMode
	uid   int
	mtime time.Time
	// id is the file's identity (zero where the system does not say).
	id fileID
}

// fileID is a file's device and inode and the time of its last status
// change (ctime, in nanoseconds; zero when not known). Where the system
// does not say, it is zero.
type fileID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Ctime int64  `json:"ctime,omitempty"`
}

// known reports whether the system said which file this is.
func (i fileID) known() bool { return i.Ino != 0 }

// readManaged looks at path with Lstat first and reads only a regular file,
// with O_NOFOLLOW and O_NONBLOCK so that a file swapped for a link or a FIFO
// between the two calls is neither followed nor waited on.
func readManaged(path string) (onDisk, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return onDisk{}, nil
	}
	if err != nil {
		return onDisk{}, fmt.Errorf("read %s: %w", path, err)
	}
	d := describe(fi)
	switch {
	case fi.IsDir():
		d.dir = true
		return d, nil
	case fi.Mode()&os.ModeSymlink != 0:
		target, _ := os.Readlink(path)
		d.odd = "not a regular file: a symlink to " + target
		return d, nil
	case !fi.Mode().IsRegular():
		d.odd = "not a regular file: " + fileType(fi.Mode())
		return d, nil
	}
	f, err := openNoFollow(path)
	if err != nil {
		if isLink(err) {
			return onDisk{exists: true, odd: "not a regular file: a symlink"}, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return onDisk{}, nil
		}
		return onDisk{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	if fi, err = f.Stat(); err != nil {
		return onDisk{}, fmt.Errorf("read %s: %w", path, err)
	}
	d = describe(fi)
	if !fi.Mode().IsRegular() {
		d.odd = "not a regular file: " + fileType(fi.Mode())
		return d, nil
	}
	if fi.Size() > MaxFileBytes {
		d.odd = fmt.Sprintf("larger than %d bytes (%d): not a CNI config", MaxFileBytes, fi.Size())
		return d, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return onDisk{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		d.odd = fmt.Sprintf("larger than %d bytes: not a CNI config", MaxFileBytes)
		return d, nil
	}
	d.data = data
	return d, nil
}

func describe(fi os.FileInfo) onDisk {
	return onDisk{exists: true, mode: fi.Mode(), mtime: fi.ModTime(), uid: ownerOf(fi), id: idOf(fi)}
}

func fileType(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	default:
		return "a special file (" + m.Type().String() + ")"
	}
}

// safeMode reports whether a file holding a token is closed to everyone
// but the agent's user (root on a node): mode 0600 and owned by that user.
func (d onDisk) safeMode() bool {
	return d.mode.Perm() == FileMode && (d.uid < 0 || d.uid == os.Geteuid())
}

// restoreMode closes a token-bearing file to everyone but the agent's user,
// through a descriptor opened without following a link. The agent runs as
// root without CAP_FOWNER or CAP_CHOWN (as the DaemonSet runs it), so the
// kernel refuses to change another user's file: that file is then closed by
// putting a copy the agent owns, mode 0600 and byte for byte the same, in
// its place by rename, as every write is made (the agent owns the
// directory). replaced says that the file was replaced rather than changed.
func restoreMode(path string, renaming func(path string) func(renamed bool)) (replaced bool, err error) {
	f, err := openNoFollow(path)
	if err != nil {
		return false, fmt.Errorf("restore the mode of %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	err = f.Chmod(FileMode)
	if err == nil {
		if err = f.Chown(os.Geteuid(), os.Getegid()); err != nil && !notPermitted(err) {
			return false, fmt.Errorf("restore the owner of %s: %w", path, err)
		}
	}
	if err == nil {
		return false, nil
	}
	if !notPermitted(err) {
		return false, fmt.Errorf("restore the mode of %s: %w", path, err)
	}
	if err := replaceWithOwnCopy(f, path, renaming); err != nil {
		return false, fmt.Errorf("restore the mode of %s: the file is another user's, whose mode the agent may not change, and replacing it with a copy failed: %w", path, err)
	}
	return true, nil
}

// replaceWithOwnCopy renames a copy of what f holds, mode 0600, over path.
func replaceWithOwnCopy(f *os.File, path string, renaming func(path string) func(renamed bool)) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file: %s", fileType(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxFileBytes {
		return fmt.Errorf("larger than %d bytes", MaxFileBytes)
	}
	_, err = replaceAtomic(path, data, FileMode, renaming)
	return err
}
