// Package agentbin builds the agent binary the integration tests and
// benchmarks run as a separate process, from the test package's directory
// (test/<name>, two levels below the module root).
package agentbin

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
)

const mainPackage = "../../cmd/calico-cni-sync"

// Shipped builds the agent as the Dockerfile does: static, -trimpath, no
// symbols. Benchmarks measure this binary.
func Shipped(out string) error {
	return build(out, true, "-trimpath", "-ldflags", "-s -w")
}

// Race builds the agent with the race detector, for tests.
func Race(out string) error { return build(out, false, "-race") }

// ForThisRun builds the shipped binary when the test binary runs
// benchmarks (-test.bench), else the race-detector one: tests look for
// races, benchmarks measure what ships.
func ForThisRun(out string) error {
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		return Shipped(out)
	}
	return Race(out)
}

func build(out string, static bool, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, mainPackage)
	cmd := exec.Command("go", args...)
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build calico-cni-sync: %v\n%s", err, b)
	}
	return nil
}
