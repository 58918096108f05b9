package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// binary builds the command once per test run, as it ships (no race
// detector): its memory is measured.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "calico-cni-sync-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "calico-cni-sync")
		cmd := exec.Command("go", "build", "-trimpath", "-o", built.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = err
			t.Logf("%s", out)
		}
	})
	if built.err != nil {
		t.Fatalf("build: %v", built.err)
	}
	return built.path
}

// maxRSS is the most memory a command may use on an odd file.
const maxRSS = 64 << 20

// watchPeakRSS samples a process's peak resident set (VmHWM) every 10 ms
// until done is closed, then sends the largest seen. The kernel's own count in the exit status cannot be used: a child
// of this process starts with the test binary's peak as its own.
func watchPeakRSS(pid int, done <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	status := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		var peak int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(status); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						if v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64); err == nil {
							peak = max(peak, v<<10)
						}
					}
				}
			}
			select {
			case <-done:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// TestOddFilesThroughTheCommand: with a FIFO, a link to /dev/zero, a 50 MB
// file or a link to another's file at each managed path, drift and
// --once --dry-run end within 5 s (or at SIGTERM), within 64 MiB.
func TestOddFilesThroughTheCommand(t *testing.T) {
	bin := binary(t)
	elsewhere := filepath.Join(t.TempDir(), "their-kubeconfig")
	must(t, os.WriteFile(elsewhere, []byte("apiVersion: v1\nkind: Config\nusers:\n- name: calico\n  user:\n    token: "+tokenC+"\n"), 0o600))
	odd := map[string]func(t *testing.T, path string){
		"FIFO":              func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o600)) },
		"link to /dev/zero": func(t *testing.T, p string) { must(t, os.Symlink("/dev/zero", p)) },
		"50 MB file": func(t *testing.T, p string) {
			f, err := os.Create(p)
			must(t, err)
			must(t, f.Truncate(50<<20))
			must(t, f.Close())
		},
		"link to another's file": func(t *testing.T, p string) { must(t, os.Symlink(elsewhere, p)) },
	}
	commands := map[string][]string{"drift": {"drift", "-o", "json"}, "once-dry-run": {"--once", "--dry-run"}}
	for name, mk := range odd {
		for _, file := range []string{cniconf.DefaultKubeconfigName, cniconf.DefaultConfListName} {
			for cname, args := range commands {
				t.Run(name+"/"+file+"/"+cname, func(t *testing.T) {
					n := newNode(t, "calico-config-v3.32.yaml")
					mk(t, filepath.Join(n.net, file))
					args := append(append([]string{}, args...), "--configmap-file", n.cm, "--token-file", n.tok, "--ca-file", n.ca,
						"--cni-net-dir", n.net, "--state-dir", filepath.Join(n.dir, "state"), "--backup-dir", n.bak, "--node-name", "node-1")
					cmd := exec.Command(bin, args...)
					out, err := os.Create(filepath.Join(n.dir, "out"))
					must(t, err)
					defer func() { _ = out.Close() }()
					cmd.Stdout, cmd.Stderr = out, out
					must(t, cmd.Start())
					exited, done := make(chan error, 1), make(chan struct{})
					go func() { exited <- cmd.Wait(); close(done) }()
					peak := watchPeakRSS(cmd.Process.Pid, done)
					select {
					case err := <-exited:
						t.Logf("exit: %v", err)
					case <-time.After(5 * time.Second):
						_ = cmd.Process.Signal(syscall.SIGTERM)
						select {
						case err := <-exited:
							t.Errorf("still running after 5s (it stopped at SIGTERM: %v)", err)
						case <-time.After(5 * time.Second):
							_ = cmd.Process.Kill()
							err := <-exited
							t.Fatalf("still running after 5s, and ignored SIGTERM (killed: %v)", err)
						}
					}
					if rss := <-peak; rss > maxRSS {
						t.Errorf("used %d MiB", rss>>20)
					}
					if b, _ := os.ReadFile(filepath.Join(n.dir, "out")); len(b) == 0 {
						t.Error("printed nothing")
					}
				})
			}
		}
	}
}
