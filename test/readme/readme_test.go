// Package readme runs the README's commands as a reader would paste them.
package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// block returns the shell block that follows `<!-- README test: name -->`.
func block(t *testing.T, readme, name string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- README test: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```")
	m := re.FindStringSubmatch(readme)
	if m == nil {
		t.Fatalf("README has no block marked %q", name)
	}
	return m[1]
}

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestQuickStart runs the quick start as written, from the repository's
// root, in a POSIX shell (sh: dash on Debian) that stops at the first
// failing command, and checks it leaves no scratch directory behind.
func TestQuickStart(t *testing.T) {
	script := block(t, readme(t), "quickstart")
	tmp := t.TempDir()
	cmd := exec.Command("sh", "-eu", "-c", script)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quick start failed: %v\n%s", err, out)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
		t.Errorf("the quick start left %v behind in TMPDIR (%v)", left, err)
	}
	for _, want := range []string{"Drifted", "plugins.0.mtu", "drift exit 1", "restored", "10-calico.conflist."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out)
		}
	}
}

// TestImageCommand runs the README's commands that point the manifests at
// a pushed image, in a scratch copy of the manifests, with kubectl's apply
// stood in by kubectl kustomize (no cluster): the rendered DaemonSet must
// run that image.
func TestImageCommand(t *testing.T) {
	script := block(t, readme(t), "image")
	dir := t.TempDir()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// work/ stands for the repository's root: my-cluster/ is made beside
	// its manifests/.
	work := filepath.Join(dir, "work")
	shims := filepath.Join(dir, "bin")
	for _, d := range []string{work, shims} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "manifests"), work).CombinedOutput(); err != nil {
		t.Fatalf("copy manifests: %v\n%s", err, out)
	}
	rendered := filepath.Join(dir, "rendered.yaml")
	kubectl := filepath.Join(root, "test", "bin", "kubectl")
	shim := "#!/bin/sh\n[ \"$1 $2\" = \"apply -k\" ] || { echo \"unexpected kubectl $*\" >&2; exit 1; }\nexec " + kubectl + " kustomize \"$3\" > " + rendered + "\n"
	if err := os.WriteFile(filepath.Join(shims, "kubectl"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("image commands failed: %v\n%s", err, out)
	}
	b, err := os.ReadFile(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "image: registry.example.com/calico-cni-sync:v0.4.0") {
		t.Fatalf("the rendered DaemonSet does not run the pushed image:\n%s", b)
	}
}
