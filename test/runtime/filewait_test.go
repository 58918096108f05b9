package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fileWaiter waits for a file in a directory to satisfy a check, woken by
// fsnotify so that neither a burst nor a measurement is paced by polling.
type fileWaiter struct {
	t    testing.TB
	w    *fsnotify.Watcher
	path string
}

func newFileWaiter(t testing.TB, dir, name string) *fileWaiter {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	must(t, err)
	must(t, w.Add(dir))
	t.Cleanup(func() { _ = w.Close() })
	return &fileWaiter{t: t, w: w, path: filepath.Join(dir, name)}
}

// wait returns when the file passes check, or fails the test after 30 s.
func (f *fileWaiter) wait(what string, check func(string) bool) time.Time {
	f.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if data, err := os.ReadFile(f.path); err == nil && check(string(data)) {
			return time.Now()
		}
		select {
		case <-f.w.Events:
		case err := <-f.w.Errors:
			f.t.Fatalf("watch %s: %v", f.path, err)
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			f.t.Fatalf("%s: %s not within 30s", f.path, what)
		}
	}
}
