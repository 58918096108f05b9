package crash

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFullStateDirectory: with the state directory on a full file system, a
// run that cannot record its write writes nothing and says so (exit 2, naming
// --state-dir); once there is room again, the next run applies the change as
// its own, not as a hand edit.
func TestFullStateDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs and needs root, as make test does (CI runs as root)")
	}
	n := newNode(t, "calico-config-v3.32.yaml", "veth_mtu", [2]string{"1440", "1460"}, "10-calico.conflist")
	state := filepath.Join(n.dir, "state")
	must(t, os.MkdirAll(state, 0o700))
	must(t, syscall.Mount("tmpfs", state, "tmpfs", 0, "size=16k"))
	t.Cleanup(func() { _ = syscall.Unmount(state, syscall.MNT_DETACH) })

	n.runToEnd(t, 0)
	before, err := os.ReadFile(filepath.Join(n.net, n.conf))
	must(t, err)

	filler := filepath.Join(state, "filler")
	fill(t, filler)
	var out bytes.Buffer
	err = n.start(1, &out).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("run with a full state directory: %v, want exit 2\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "--state-dir") || !strings.Contains(out.String(), "nothing was written") {
		t.Errorf("the error does not say what happened and which flag to look at:\n%s", out.String())
	}
	after, err := os.ReadFile(filepath.Join(n.net, n.conf))
	must(t, err)
	if !bytes.Equal(before, after) {
		t.Fatal("the conf was rewritten although its record could not be")
	}

	must(t, os.Remove(filler))
	n.runToEnd(t, 1)
}

// fill writes into path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 1024)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}
