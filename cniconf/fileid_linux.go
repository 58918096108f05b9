package cniconf

import (
	"os"
	"syscall"
)

// idOf is the identity of the file fi describes: its device and inode, and
// the time of its last status change, which no user can set.
func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Ctime: st.Ctim.Nano()}
}
