package realnode

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ociArchive is an image archive's files by name.
type ociArchive map[string][]byte

func readArchive(t *testing.T, path string) ociArchive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (make image builds it)", err)
	}
	defer func() { _ = f.Close() }()
	files := ociArchive{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
	return files
}

type descriptor struct {
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform"`
}

func (a ociArchive) blob(t *testing.T, digest string, into any) []byte {
	t.Helper()
	b, ok := a["blobs/"+strings.Replace(digest, ":", "/", 1)]
	if !ok {
		t.Fatalf("blob %s missing", digest)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestImageAgreesWithDockerfile reads the archive make image wrote (the one
// the real-node tests deploy) and checks it is the image the Dockerfile
// describes and the manifests run: one static binary for each platform,
// the same build flags, user, entrypoint and labels, tagged with the
// version in VERSION, which the manifests' image tag, the README, the
// CHANGELOG and the binary's version command name too.
func TestImageAgreesWithDockerfile(t *testing.T) {
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	vb, err := os.ReadFile(filepath.Join(repo, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(vb))
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(version) {
		t.Fatalf("VERSION %q is not a semantic version", version)
	}

	// The manifests run exactly this tag.
	kust, err := os.ReadFile(filepath.Join(repo, "manifests", "base", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kust), "newName: calico-cni-sync\n") || !strings.Contains(string(kust), "newTag: "+version+"\n") {
		t.Errorf("manifests/base/kustomization.yaml does not run calico-cni-sync:%s", version)
	}

	// The README and the CHANGELOG name the same release.
	for _, doc := range []string{"README.md", "CHANGELOG.md"} {
		b, err := os.ReadFile(filepath.Join(repo, doc))
		if err != nil {
			t.Fatal(err)
		}
		named := regexp.MustCompile(`calico-cni-sync[:-](v\d+\.\d+\.\d+)`).FindAllStringSubmatch(string(b), -1)
		if len(named) == 0 {
			t.Errorf("%s names no image or archive version", doc)
		}
		for _, m := range named {
			if m[1] != version {
				t.Errorf("%s names %s; VERSION is %s", doc, m[0], version)
			}
		}
	}
	changelog, _ := os.ReadFile(filepath.Join(repo, "CHANGELOG.md"))
	if !strings.Contains(string(changelog), "## ["+strings.TrimPrefix(version, "v")+"]") {
		t.Errorf("CHANGELOG.md has no section for %s", version)
	}

	// The Dockerfile and make image build the same way.
	dockerfile, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-n", "image")
	cmd.Dir = repo
	makeOut, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, makeOut)
	}
	for _, want := range []struct{ where, text string }{
		{"Dockerfile", `CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \` + "\n" + `    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}"`},
		{"Dockerfile", "FROM scratch\n"},
		{"Dockerfile", "USER 65532:65532\n"},
		{"Dockerfile", `ENTRYPOINT ["/calico-cni-sync"]`},
		{"Dockerfile", "org.opencontainers.image.version=${VERSION}"},
		{"Dockerfile", "org.opencontainers.image.revision=${REVISION}"},
		{"make -n image", "CGO_ENABLED=0 GOOS=${p%/*} GOARCH=${p#*/} go build -trimpath -ldflags '-s -w -X main.version=" + version + " -X main.revision="},
		{"make -n image", "--user 65532:65532"},
		{"make -n image", `--entrypoint '["/calico-cni-sync"]'`},
	} {
		src := string(dockerfile)
		if want.where == "make -n image" {
			src = string(makeOut)
		}
		if !strings.Contains(src, want.text) {
			t.Errorf("%s lacks %q", want.where, want.text)
		}
	}
	var firstRev string
	if m := regexp.MustCompile(`main\.revision=([0-9a-f]*)'`).FindStringSubmatch(string(makeOut)); m != nil {
		firstRev = m[1]
	}

	// The archive is that image.
	a := readArchive(t, filepath.Join(repo, "bin", "calico-cni-sync-"+version+".oci.tar"))
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(a["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json names %d images, want 1", len(index.Manifests))
	}
	top := index.Manifests[0]
	if got, want := top.Annotations["io.containerd.image.name"], "docker.io/library/calico-cni-sync:"+version; got != want {
		t.Errorf("the image is named %q, want %q", got, want)
	}
	if got := top.Annotations["org.opencontainers.image.ref.name"]; got != version {
		t.Errorf("the image's OCI ref name is %q, want %q", got, version)
	}
	var platforms struct{ Manifests []descriptor }
	a.blob(t, top.Digest, &platforms)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	seen := map[string]bool{}
	for _, m := range platforms.Manifests {
		arch := m.Platform.Architecture
		seen[m.Platform.OS+"/"+arch] = true
		var manifest struct {
			Config descriptor
			Layers []descriptor
		}
		a.blob(t, m.Digest, &manifest)
		var config struct {
			Architecture, OS string
			Config           struct {
				User       string
				Entrypoint []string
				Labels     map[string]string
			}
		}
		a.blob(t, manifest.Config.Digest, &config)
		if config.Config.User != "65532:65532" || strings.Join(config.Config.Entrypoint, " ") != "/calico-cni-sync" {
			t.Errorf("%s: user %q, entrypoint %q", arch, config.Config.User, config.Config.Entrypoint)
		}
		if config.Architecture != arch || config.OS != "linux" {
			t.Errorf("%s: config says %s/%s", arch, config.OS, config.Architecture)
		}
		if l := config.Config.Labels; l["org.opencontainers.image.version"] != version || l["org.opencontainers.image.revision"] != firstRev || firstRev == "" {
			t.Errorf("%s: labels %v, want version %s revision %s", arch, l, version, firstRev)
		}
		if len(manifest.Layers) != 1 {
			t.Fatalf("%s: %d layers, want 1", arch, len(manifest.Layers))
		}
		gz, err := gzip.NewReader(bytes.NewReader(a.blob(t, manifest.Layers[0].Digest, nil)))
		if err != nil {
			t.Fatalf("%s: the layer: %v", arch, err)
		}
		layer := tar.NewReader(gz)
		var names []string
		for {
			h, err := layer.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			if h.Name != "calico-cni-sync" {
				continue
			}
			bin, _ := io.ReadAll(layer)
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("%s: %v", arch, err)
			}
			if f.Machine != machines[arch] {
				t.Errorf("%s: the binary is for %v", arch, f.Machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s: the binary is dynamically linked", arch)
				}
			}
			if h.Mode&0o111 == 0 {
				t.Errorf("%s: the binary is not executable (%o)", arch, h.Mode)
			}
		}
		if strings.Join(names, ",") != "calico-cni-sync" {
			t.Errorf("%s: the layer holds %v, want the binary alone", arch, names)
		}
	}
	// The binary make image built reports the same version.
	out, err := exec.Command(filepath.Join(repo, "bin", "image", "linux-"+goarch(), "calico-cni-sync"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "calico-cni-sync "+version+" (revision "+firstRev+")") {
		t.Errorf("version printed %q (%v), want %s at %s", out, err, version, firstRev)
	}
	if !seen["linux/amd64"] || !seen["linux/arm64"] {
		t.Errorf("the image's platforms are %v, want linux/amd64 and linux/arm64", seen)
	}
}
