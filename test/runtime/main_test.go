// Package runtime proves on a real container runtime what the rest of the
// suite proves with containerd's go-cni library in the test process: that
// containerd's CRI plugin, which watches the CNI directory and reloads on
// every event, loads what the agent writes, never sees a file half written,
// and agrees with the agent about which config it uses (Shadowed).
//
// Each test starts its own containerd (Debian's containerd 1.6, as root) on
// its own CNI directory and reads the runtime's view through the CRI API
// with crictl (built into test/bin from the tools module, so no CRI library
// is a dependency of the product), next to containerd's own log of every
// reload. The agent is the binary TestMain builds, run as a process as on a
// node, against the real control plane of test/controlplane.
package runtime

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// Suite-wide: one control plane and one agent binary for the package.
var (
	cp               *controlplane.ControlPlane
	binary           string
	containerdBinary string
	crictlBinary     string
	seq              atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		flag.Parse()
		if err := findRuntime(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var stop func()
		var err error
		cp, binary, stop, err = harness.Setup("runtime")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stop()
		return m.Run()
	}())
}

// findRuntime finds containerd (on PATH, from Debian's package) and crictl
// (in test/bin, or $CONTROLPLANE_BIN_DIR, beside the control plane). A
// missing one fails the package, never skips it: CI installs both.
func findRuntime() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("test/runtime runs containerd, which needs root (CI runs as root)")
	}
	var err error
	if containerdBinary, err = exec.LookPath("containerd"); err != nil {
		return fmt.Errorf("containerd not found (%w): apt-get install -y containerd, as .ci/run does", err)
	}
	dir := os.Getenv("CONTROLPLANE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	crictlBinary, err = filepath.Abs(filepath.Join(dir, "crictl"))
	if err != nil {
		return err
	}
	if st, err := os.Stat(crictlBinary); err != nil || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("crictl not found at %s: run \"make control-plane\"", crictlBinary)
	}
	return nil
}
