package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/agentbin"
	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
)

// Setup builds the agent binary for this run (race-enabled for tests, as it
// ships for benchmarks) and starts the control plane, for a test package's
// TestMain. stop removes both.
func Setup(name string) (cp *controlplane.ControlPlane, binary string, stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "calico-cni-sync-"+name)
	if err != nil {
		return nil, "", nil, err
	}
	binary = filepath.Join(dir, "calico-cni-sync")
	if err := agentbin.ForThisRun(binary); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, err
	}
	cp, err = controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, fmt.Errorf("start the control plane: %w", err)
	}
	if err := ServeCalicoCNI(ctx, cp.Config, cp.Client); err != nil {
		_ = cp.Stop()
		_ = os.RemoveAll(dir)
		return nil, "", nil, fmt.Errorf("serve Calico's ClusterInformation and CNI ClusterRole: %w", err)
	}
	return cp, binary, func() {
		_ = cp.Stop()
		_ = os.RemoveAll(dir)
	}, nil
}
