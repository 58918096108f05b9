package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestBindMountedDirRemovedOnTheHost: the agent's CNI directory is a bind
// mount of the host's (as a DaemonSet that mounts the directory itself, not
// its parent, gives it). When the host's directory is removed, the
// container still sees the old one and every write would be lost: the
// agent's liveness fails, so the kubelet restarts it onto the host's
// directory. Run in a mount namespace of its own (unshare -m), as a
// container is.
func TestBindMountedDirRemovedOnTheHost(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	host := filepath.Join(e.dir, "host", "net.d")
	must(t, os.MkdirAll(host, 0o755))
	node, container := e.node, e.net
	args := append(e.args(), "--node-name", node, "--cni-net-dir", container,
		"--state-dir", filepath.Join(e.dir, "state-"+node), "--backup-dir", filepath.Join(e.dir, "backups-"+node),
		"--status-file", filepath.Join(e.dir, "status-"+node+".json"), "-v", "1")
	// unshare runs sh in a new mount namespace with private propagation;
	// sh bind-mounts the host directory over the container's and becomes
	// the agent, so the agent's PID is the test's child.
	argv := append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", host, container, binary}, args...)
	a := e.launchAgentWith(procEnv(), node, container, argv)
	e.eventually(30*time.Second, "agent ready", func() error { return a.probe("/readyz") })
	e.waitCondition(node, corev1.ConditionFalse, "InSync")
	if _, err := os.Stat(filepath.Join(host, "10-calico.conflist")); err != nil {
		t.Fatalf("the agent's write did not reach the host's directory through the bind mount: %v", err)
	}
	if err := a.probe("/healthz"); err != nil {
		t.Fatalf("healthy before the removal: %v", err)
	}

	must(t, os.RemoveAll(host))
	e.eventually(30*time.Second, "liveness fails", func() error {
		err := a.probe("/healthz")
		if err == nil {
			return errorf("still healthy")
		}
		if !strings.Contains(err.Error(), "removed on the host") {
			return errorf("unhealthy for another reason: %v", err)
		}
		return nil
	})
	// What the container sees is gone for good: put a directory back on
	// the host so the cleanup's checks look at a real one.
	must(t, os.MkdirAll(host, 0o755))
}
