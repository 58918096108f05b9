package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBuildsForWorkstations: report, report --stuck and render are run from
// a workstation, so the command builds for Windows and macOS too (the node's
// file handling is Unix code behind build tags). Cross-compiling needs no
// network once the modules are in the cache.
func TestBuildsForWorkstations(t *testing.T) {
	for _, goos := range []string{"windows", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "calico-cni-sync"), ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s go build: %v\n%s", goos, err, out)
			}
		})
	}
}
