package e2e

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStaticBuildFlags builds the binary with the flags the Dockerfile and
// `make image-binary` name, and checks it needs no dynamic loader or library
// and carries the stamped version. It builds no image: test/realnode reads
// the image make image writes, and runs it on a real node.
func TestStaticBuildFlags(t *testing.T) {
	const flags = `-s -w -X main.version=`
	files := map[string][]string{
		"../../Dockerfile": {`CGO_ENABLED=0`, `go build -trimpath -ldflags "` + flags + `${VERSION} -X main.revision=${REVISION}"`, `ENTRYPOINT ["/calico-cni-sync"]`},
		"../../Makefile":   {`LDFLAGS := ` + flags + `$(VERSION) -X main.revision=$(REVISION)`, `CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'`},
	}
	for path, wants := range files {
		b, err := os.ReadFile(path)
		must(t, err)
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", path, w)
			}
		}
	}
	gomod, err := os.ReadFile("../../go.mod")
	must(t, err)
	dockerfile, _ := os.ReadFile("../../Dockerfile")
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil || !strings.Contains(string(dockerfile), "golang:"+string(goLine[1])+" ") {
		t.Errorf("the Dockerfile's golang image does not match go.mod's go line %q", goLine)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "calico-cni-sync-static")
	const version = "v0.0.0-e2e.1"
	const rev = "0123456789abcdef0123456789abcdef01234567"
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", flags+version+" -X main.revision="+rev, "-o", bin, "../../cmd/calico-cni-sync")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	must(t, err)
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %s program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -s did not apply")
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || string(out) != "calico-cni-sync "+version+" (revision "+rev+")\n" {
		t.Fatalf("version: %q %v", out, err)
	}
}
