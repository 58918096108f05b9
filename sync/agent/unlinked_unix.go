//go:build unix

package agent

import (
	"os"
	"syscall"
)

// unlinked reports whether a file has no link left: removed, yet still
// seen through an open descriptor or a bind mount.
func unlinked(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
