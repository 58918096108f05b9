package realnode

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// standInPaths are where Calico's DaemonSets run programs of Calico's
// images (commands and exec probes); calico-image answers under each.
var standInPaths = []string{
	"bin/calico-node", "opt/cni/bin/install", "opt/cni/bin/calico-ipam", "install-cni.sh",
	"opt/bin/flanneld", "usr/local/bin/flexvol",
}

// loadStandInImages builds and imports the pause image and a stand-in for
// every image the install fixtures name (make image builds the agent's;
// a test imports it with ImportImage). Images whose entrypoint is an init
// step (pod2daemon-flexvol) get the entrypoint that exits at once.
func (n *Node) loadStandInImages() error {
	refs, err := fixtureImages(filepath.Join(n.repo, "test", "testdata", "fixtures", "installs"))
	if err != nil {
		return err
	}
	rootfs := filepath.Join(n.dir, "images", "calico")
	bin := filepath.Join(rootfs, standInPaths[0])
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	if err := n.goBuild(bin, "./test/realnode/calico-image"); err != nil {
		return err
	}
	for _, p := range standInPaths[1:] {
		link := filepath.Join(rootfs, p)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/"+standInPaths[0], link); err != nil {
			return err
		}
	}
	pause := filepath.Join(n.dir, "images", "pause")
	if err := n.goBuild(filepath.Join(pause, "pause"), "./test/realnode/pause"); err != nil {
		return err
	}
	var flexvol, others []string
	for _, r := range refs {
		if strings.Contains(r, "pod2daemon-flexvol") {
			flexvol = append(flexvol, r)
		} else {
			others = append(others, r)
		}
	}
	for _, img := range []struct {
		name, rootfs, entrypoint string
		refs                     []string
	}{
		{"pause", pause, "/pause", []string{pauseImage}},
		{"calico", rootfs, "/bin/calico-node", others},
		{"flexvol", rootfs, "/usr/local/bin/flexvol", flexvol},
	} {
		if len(img.refs) == 0 {
			continue
		}
		archive := filepath.Join(n.dir, "images", img.name+".tar")
		args := []string{"-o", archive, "--rootfs", "linux/" + goarch() + "=" + img.rootfs, "--entrypoint", img.entrypoint}
		for _, r := range img.refs {
			args = append(args, "--tag", r)
		}
		if out, err := exec.Command(filepath.Join(n.bin, "imagebuild"), args...).CombinedOutput(); err != nil {
			return fmt.Errorf("imagebuild %s: %v: %s", img.name, err, out)
		}
		if err := n.ImportImage(archive); err != nil {
			return err
		}
	}
	return nil
}

var imageLine = regexp.MustCompile(`(?m)^\s*(?:-\s+)?image:\s*"?([^"\s]+)"?\s*$`)

// fixtureImages lists the images the install fixtures run.
func fixtureImages(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range imageLine.FindAllSubmatch(b, -1) {
			seen[string(m[1])] = true
		}
	}
	refs := make([]string, 0, len(seen))
	for r := range seen {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	return refs, nil
}

func goarch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}
