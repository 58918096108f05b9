//go:build !unix

package cniconf

import (
	"errors"
	"fmt"
	"os"
)

// The node's files are Unix files: elsewhere (report and render from a
// workstation) the package renders and compares, and refuses to manage a
// directory.
var errNotUnix = errors.New("managing a CNI directory needs Linux or macOS")

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func isLink(error) bool { return false }

func notPermitted(err error) bool { return errors.Is(err, os.ErrPermission) }

func ownerOf(os.FileInfo) int { return -1 }

func lockFile(*os.File) error { return errNotUnix }

func renameInPlace(path string, _ []byte, _ os.FileMode, _ func(path string) func(renamed bool)) (bool, error) {
	return false, fmt.Errorf("write %s: %w", path, errNotUnix)
}

type staged struct{ id fileID }

func stage(path string, _ []byte, _ os.FileMode) (*staged, error) {
	return nil, fmt.Errorf("write %s: %w", path, errNotUnix)
}

func (*staged) discard() {}

func (*staged) commit(func(path string) func(renamed bool)) (bool, error) { return false, errNotUnix }
