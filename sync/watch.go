package sync

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
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
func watchDirs(ctx context.Context, dirs []string, relevant func(path string) bool, trigger func(why string), logger *slog.Logger) error {
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
					go rewatch(ctx, w, ev.Name, trigger)
					trigger("directory removed")
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
				trigger("watch error")
			}
		}
	}()
	return nil
}

// rewatch adds the watch on dir again once dir exists, and triggers a
// reconcile for whatever happened in between.
func rewatch(ctx context.Context, w *fsnotify.Watcher, dir string, trigger func(why string)) {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, false, func(context.Context) (bool, error) {
		return w.Add(dir) == nil, nil
	})
	if err == nil {
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
