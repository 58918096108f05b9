// Package layout keeps the product's packages in their layers: each
// package's doc says what it must not import, and this test fails when one
// does, reading the import graph from go list.
package layout

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/calico-cni-sync/calico-cni-sync"

// never: a package (key) and what it must not depend on, directly or not.
// A prefix ending in "/" stands for every package under it.
var never = map[string][]string{
	"cniconf":         {module + "/sync/", module + "/cmd/", "k8s.io/client-go/"},
	"sync/token":      {module + "/", "k8s.io/client-go/", "k8s.io/api/"},
	"sync/installcni": {module + "/sync/", module + "/cmd/", "k8s.io/client-go/"},
	"sync/probe":      {module + "/sync/inputs", module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/suggest":    {module + "/sync/inputs", module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", "k8s.io/client-go/"},
	"sync/inputs":     {module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/reconcile":  {module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/status":     {module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/stuck":      {module + "/sync/agent", module + "/cmd/"},
	"sync/agent":      {module + "/sync/stuck", module + "/cmd/"},
	"sync/sandbox":    {module + "/sync/inputs", module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/rollout":    {module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"sync/plan":       {module + "/sync/reconcile", module + "/sync/status", module + "/sync/agent", module + "/sync/stuck", module + "/cmd/"},
	"test/harness":    {module + "/sync/", module + "/cmd/", module + "/cniconf"},
}

// goList runs go list in the module's root.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func forbidden(dep string, rules []string) bool {
	for _, r := range rules {
		if dep == strings.TrimSuffix(r, "/") || strings.HasPrefix(dep, r) && strings.HasSuffix(r, "/") || dep == r {
			return true
		}
	}
	return false
}

// TestNeverImports: no package depends on what its layer forbids.
func TestNeverImports(t *testing.T) {
	for pkg, rules := range never {
		t.Run(pkg, func(t *testing.T) {
			for _, dep := range goList(t, "-deps", "./"+pkg) {
				if dep != module+"/"+pkg && forbidden(dep, rules) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		})
	}
}

// TestNothingImportsCmd: cmd is the top; no product or test package
// imports it.
func TestNothingImportsCmd(t *testing.T) {
	lines := goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "./...")
	for _, l := range lines {
		pkg, imports, _ := strings.Cut(l, ":")
		for _, imp := range strings.Split(imports, ",") {
			if strings.HasPrefix(imp, module+"/cmd/") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
}

// TestNoPackageNamedSync: sync/ is a folder of packages, none of them named
// like the standard library's sync, and no Go file at its root.
func TestNoPackageNamedSync(t *testing.T) {
	for _, l := range goList(t, "-f", "{{.ImportPath}}:{{.Name}}", "./...") {
		pkg, name, _ := strings.Cut(l, ":")
		if name == "sync" {
			t.Errorf("%s is named sync", pkg)
		}
	}
	entries, err := os.ReadDir(filepath.Join(root(t), "sync"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
			t.Errorf("sync/%s: the sync folder holds packages only", e.Name())
		}
	}
}

// TestEveryPackageSaysWhatItMustNotImport: each package of the layers
// above has a doc comment naming what it must not import.
func TestEveryPackageSaysWhatItMustNotImport(t *testing.T) {
	pkgs := make([]string, 0, len(never))
	for p := range never {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		if !strings.Contains(packageDoc(t, p), "import") {
			t.Errorf("%s's doc does not say what it must not import", p)
		}
	}
}

// packageDoc is the package comment of the package in dir.
func packageDoc(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, _, found := strings.Cut(string(data), "\npackage ")
		if _, doc, ok := strings.Cut(head, "// Package "); found && ok {
			return doc
		}
	}
	return ""
}
