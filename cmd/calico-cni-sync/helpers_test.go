package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync"
)

// once runs --once and insists it succeeds.
func (n *node) once() {
	n.t.Helper()
	if code, out := n.run("--once"); code != 0 {
		n.t.Fatalf("--once exit %d: %s", code, out)
	}
}

func (n *node) editConfigMap(old, new string) {
	n.t.Helper()
	b, err := os.ReadFile(n.cm)
	must(n.t, err)
	if !strings.Contains(string(b), old) {
		n.t.Fatalf("ConfigMap lacks %q", old)
	}
	must(n.t, os.WriteFile(n.cm, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

func stateOf(s string) cniconf.State { return cniconf.State(s) }

// fileIn finds a file in a report.
func fileIn(t *testing.T, rep *sync.Report, name string) cniconf.FileStatus {
	t.Helper()
	for _, f := range rep.Files {
		if filepath.Base(f.Path) == name {
			return f
		}
	}
	t.Fatalf("report has no %s", name)
	return cniconf.FileStatus{}
}
