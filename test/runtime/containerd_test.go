package runtime

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// containerdConfig is the smallest config under which containerd 1.6's CRI
// plugin runs and watches a CNI directory: everything under one temporary
// directory, the native snapshotter (no mount), no TCP service, the plugins
// that would touch the host or probe file systems disabled. max_conf_num = 1
// is the kubelet's usual runtime setup: one network, the first config by name.
// Debug level makes containerd log every CNI reload it starts, which is the
// complete record of loads a status poller can only sample.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  level = "debug"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = %[5]q
    bin_dir = %[6]q
    max_conf_num = 1
`

// containerd is a containerd process whose CRI plugin loads the CNI configs
// of one test's directory, and what it logged about each load.
type containerd struct {
	t      testing.TB
	dir    string // root, state, socket, config, crictl.yaml
	crictl string // crictl's config file: the socket, a timeout
	cmd    *exec.Cmd
	done   chan error

	mu      sync.Mutex
	reloads []reload
	tail    []string // the last lines of its log, for a failing test
}

// reload is one CNI reload containerd started on a file system event in the
// directory, as its log tells: every event but CREATE and CHMOD starts one.
type reload struct {
	at    time.Time
	event string // as fsnotify prints it: `WRITE "/dir/10-calico.conflist"`
	err   string // the load's error; empty for a load that succeeded
}

// startContainerd starts containerd as root with its CRI CNI directory on
// confDir, waits until crictl reaches it, and kills it at cleanup.
//
// Its own directory is a short one under /tmp, not t.TempDir(): a unix
// socket path must stay under 108 bytes.
func startContainerd(t testing.TB, confDir string) *containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctd")
	must(t, err)
	c := &containerd{t: t, dir: dir, crictl: filepath.Join(dir, "crictl.yaml"), done: make(chan error, 1)}
	sock := filepath.Join(dir, "containerd.sock")
	bin := filepath.Join(dir, "cni-bin") // empty: status needs no plugin binary
	must(t, os.MkdirAll(bin, 0o755))
	conf := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", confDir, bin)
	must(t, os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644))
	must(t, os.WriteFile(c.crictl, []byte("runtime-endpoint: unix://"+sock+"\nimage-endpoint: unix://"+sock+"\ntimeout: 10\n"), 0o644))

	c.cmd = exec.Command(containerdBinary, "--config", filepath.Join(dir, "config.toml"))
	// Killed with the test binary too, should that die before cleanup.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := c.cmd.StderrPipe()
	must(t, err)
	must(t, c.cmd.Start())
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		c.readLog(stderr)
	}()
	go func() {
		<-logDone
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case err := <-c.done:
			t.Errorf("containerd exited before the test ended: %v", err)
		default:
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			select {
			case err := <-c.done:
				if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Errorf("containerd exited with %v before SIGKILL reached it", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("containerd did not exit within 10s of SIGKILL")
			}
		}
		if t.Failed() {
			t.Logf("containerd log (tail):\n%s", c.logTail())
		}
		if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(mounts, []byte(dir)) {
			t.Errorf("containerd left a mount under %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	eventually(t, context.Background(), 30*time.Second, "containerd serving CRI", func() error {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("containerd exited: %v\n%s", err, c.logTail())
		default:
		}
		_, err := c.info()
		return err
	})
	return c
}

// readLog keeps what containerd logs about CNI reloads. Reloads run one at a
// time in the conf syncer's goroutine, so a failure line belongs to the
// reload started last.
func (c *containerd) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		msg := logfmtValue(line, "msg")
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 60 {
			c.tail = c.tail[len(c.tail)-60:]
		}
		switch {
		case strings.HasPrefix(msg, "receiving change event from cni conf dir: "):
			at, _ := time.Parse(time.RFC3339Nano, logfmtValue(line, "time"))
			c.reloads = append(c.reloads, reload{at: at, event: strings.Join(strings.Fields(strings.TrimPrefix(msg, "receiving change event from cni conf dir: ")), " ")})
		case strings.HasPrefix(msg, "failed to reload cni configuration") && len(c.reloads) > 0:
			c.reloads[len(c.reloads)-1].err = logfmtValue(line, "error")
		}
		c.mu.Unlock()
	}
}

// logfmtValue is the value of key in a logrus text line (key="quoted" or
// key=bare); "" when absent.
func logfmtValue(line, key string) string {
	rest, ok := strings.CutPrefix(line, key+"=")
	if !ok {
		i := strings.Index(line, " "+key+"=")
		if i < 0 {
			return ""
		}
		rest = line[i+len(" "+key+"="):]
	}
	if !strings.HasPrefix(rest, `"`) {
		v, _, _ := strings.Cut(rest, " ")
		return v
	}
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			if v, err := strconv.Unquote(rest[:j+1]); err == nil {
				return v
			}
			return rest[1:j]
		}
	}
	return ""
}

// reloadsSince are the reloads started at or after the mark (a count from
// mark()).
func (c *containerd) reloadsSince(mark int) []reload {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]reload(nil), c.reloads[mark:]...)
}

func (c *containerd) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reloads)
}

// logTail is the end of containerd's log, any JWT masked: no line is known
// to hold one, and a failing test must not be the first to print one.
func (c *containerd) logTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return jwtPattern.ReplaceAllString(strings.Join(c.tail, "\n"), "<token>")
}

var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// failed are the reloads that failed, and a sample of their errors.
func failed(rs []reload) (n int, sample []string) {
	for _, r := range rs {
		if r.err != "" {
			n++
			if len(sample) < 3 {
				sample = append(sample, r.event+": "+r.err)
			}
		}
	}
	return n, sample
}

// eventually polls check until it passes or the deadline: no sleep-and-hope.
func eventually(t testing.TB, ctx context.Context, timeout time.Duration, what string, check func() error) {
	t.Helper()
	harness.Eventually(t, ctx, timeout, what, check)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
