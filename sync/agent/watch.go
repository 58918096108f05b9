package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// watchDirs watches directories, not files: editors and runtimes replace
// files by rename, after which a watch on the file itself goes deaf. relevant
// filters events by name; every relevant event calls trigger. Errors from the
// watcher are logged and also trigger a reconcile, since an overflow means
// events were lost.
//
// own, when set, holds the renames the agent is making itself: their events
// trigger nothing.
func watchDirs(ctx context.Context, dirs []string, relevant func(path string) bool, trigger func(why string), own *OwnWrites, logger *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("start file watcher: %w", err)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			_ = w.Close()
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	go func() {
		defer func() { _ = w.Close() }()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if slices.Contains(dirs, ev.Name) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
					// The directory itself went away, and its watch with it.
					// The reconcile recreates it on its next write.
					logger.Warn("watched directory removed; watching again once it is back", "dir", ev.Name)
					own.forget()
					go rewatch(ctx, w, ev.Name, trigger, own)
					trigger("directory removed")
					continue
				}
				if own.consume(ev) {
					logger.Debug("own write", "path", ev.Name)
					continue
				}
				if relevant(ev.Name) {
					logger.Debug("file event", "path", ev.Name, "op", ev.Op.String())
					trigger("file " + filepath.Base(ev.Name))
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logger.Warn("file watcher error; reconciling in case events were lost", "err", err)
				own.forget()
				trigger("watch error")
			}
		}
	}()
	return nil
}

// rewatch adds the watch on dir again once dir exists, and triggers a
// reconcile for whatever happened in between. A rename the agent made
// while the directory was not watched brought no event: nothing is expected
// from before the watch.
func rewatch(ctx context.Context, w *fsnotify.Watcher, dir string, trigger func(why string), own *OwnWrites) {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, false, func(context.Context) (bool, error) {
		return w.Add(dir) == nil, nil
	})
	if err == nil {
		own.forget()
		trigger("directory back")
	}
}

// cniDirFilter passes events on the files the agent manages and on any file a
// runtime would load (another one may shadow ours); it ignores temporary files,
// ours and editors'.
func cniDirFilter(managed []string) func(string) bool {
	return func(path string) bool {
		base := filepath.Base(path)
		if slices.Contains(managed, base) {
			return true
		}
		return !strings.HasPrefix(base, ".") && slices.Contains(cniconf.ConfExtensions, filepath.Ext(base))
	}
}

// OwnWrites are the renames into place the agent is making itself in a
// watched directory. The pass that writes a file already reports the state
// after its write, so the event of that rename must not start another pass,
// which would make the next change wait for it. A rename into place brings
// exactly one event of the target's name (IN_MOVED_TO, fsnotify's Create),
// in order with every other event of the directory, so each expected rename
// cancels one such event. When another writer's rename comes between (the
// count taken before ours happens), it is the agent's own event that then
// triggers the pass, which sees both. Lost events (an overflow, the
// directory removed) forget every expectation.
type OwnWrites struct {
	mu      sync.Mutex
	pending map[string]int
	// renamed is when each path was last renamed into place, for the log
	// line of the write (the time from its trigger).
	renamed map[string]time.Time
}

// Renaming is cniconf.Dir's Renaming: it expects the event of path's
// rename, and forgets it again when the rename did not happen.
func (o *OwnWrites) Renaming(path string) func(renamed bool) {
	path = filepath.Clean(path)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending == nil {
		o.pending = map[string]int{}
	}
	o.pending[path]++
	return func(renamed bool) {
		at := time.Now()
		o.mu.Lock()
		defer o.mu.Unlock()
		if renamed {
			if o.renamed == nil {
				o.renamed = map[string]time.Time{}
			}
			o.renamed[path] = at
			return
		}
		if o.pending[path] > 0 {
			o.pending[path]--
		}
	}
}

// consume reports whether ev is the event of an expected rename, and
// expects it no more.
func (o *OwnWrites) consume(ev fsnotify.Event) bool {
	if o == nil || ev.Op != fsnotify.Create {
		return false
	}
	path := filepath.Clean(ev.Name)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending[path] == 0 {
		return false
	}
	o.pending[path]--
	return true
}

// renamedAt is when path was last renamed into place by the agent; zero
// when never.
func (o *OwnWrites) renamedAt(path string) time.Time {
	if o == nil {
		return time.Time{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.renamed[filepath.Clean(path)]
}

func (o *OwnWrites) forget() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.pending)
}
