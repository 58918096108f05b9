// Command imagebuild writes a container image as an OCI image layout in a
// tar archive, without a container engine: one layer per platform made from
// a directory tree, on an empty base, with the entrypoint, user and labels
// given on the command line. `ctr images import` loads the archive on a node
// and `crane push` sends it to a registry.
//
// It builds the agent's image (make image) and the images the real-node tests
// run (the pause image, a busybox, stand-ins for Calico's images), so that
// the tests deploy images made the way the release is.
//
// The output is reproducible: file times, owners and the image's creation
// time are fixed (SOURCE_DATE_EPOCH, else the Unix epoch), so the same inputs
// give the same digests.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var rootfs, labels, refs listFlag
	fl.Var(&refs, "tag", "image reference to name the image by (repeatable), e.g. calico-cni-sync:v0.4.0")
	fl.Var(&rootfs, "rootfs", "OS/ARCH=DIR: the layer for a platform, from a directory tree (repeatable)")
	fl.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	entrypoint := fl.String("entrypoint", "", "entrypoint, a JSON array or one path")
	cmd := fl.String("cmd", "", "default arguments, a JSON array")
	user := fl.String("user", "", "user the image runs as, e.g. 65532:65532")
	out := fl.String("o", "", "the archive to write")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if len(refs) == 0 || len(rootfs) == 0 || *out == "" {
		return errors.New("--tag, --rootfs and -o are required")
	}
	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		created = time.Unix(sec, 0).UTC()
	}
	cfg := v1.Config{User: *user, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, WorkingDir: "/", Labels: map[string]string{}}
	var err error
	if cfg.Entrypoint, err = parseArgv(*entrypoint); err != nil {
		return fmt.Errorf("--entrypoint: %w", err)
	}
	if cfg.Cmd, err = parseArgv(*cmd); err != nil {
		return fmt.Errorf("--cmd: %w", err)
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		cfg.Labels[k] = v
	}

	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, r := range rootfs {
		plat, dir, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("--rootfs %q: want OS/ARCH=DIR", r)
		}
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			return fmt.Errorf("--rootfs %q: %w", r, err)
		}
		img, err := platformImage(*p, dir, cfg, created)
		if err != nil {
			return fmt.Errorf("image for %s: %w", plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return writeArchive(*out, idx, refs)
}

// parseArgv reads `["/a","b"]` or a single word.
func parseArgv(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "[") {
		return []string{s}, nil
	}
	var argv []string
	for _, f := range strings.Split(strings.Trim(s, "[]"), ",") {
		f = strings.TrimSpace(f)
		u, err := strconv.Unquote(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		argv = append(argv, u)
	}
	return argv, nil
}

// platformImage is one layer made from dir on an empty base.
func platformImage(p v1.Platform, dir string, cfg v1.Config, created time.Time) (v1.Image, error) {
	data, err := layerTar(dir, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "imagebuild"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Variant = p.Architecture, p.OS, p.Variant
	cf.Config = cfg
	cf.Created = v1.Time{Time: created}
	return mutate.ConfigFile(img, cf)
}

// layerTar is dir as a tar stream in name order, owned by root, with fixed
// times, so the digest depends on the content only.
func layerTar(dir string, mtime time.Time) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes idx as an OCI image layout, its index entry named by
// every ref the way containerd's own exporter names it (the full name in
// io.containerd.image.name, the tag in org.opencontainers.image.ref.name),
// and packs the layout into a tar at out.
func writeArchive(out string, idx v1.ImageIndex, refs []string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".imagebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for _, r := range refs {
		tag, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("--tag %q: %w", r, err)
		}
		registry := tag.RegistryStr()
		if registry == name.DefaultRegistry {
			registry = "docker.io" // as containerd and the kubelet name it
		}
		err = lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          registry + "/" + tag.RepositoryStr() + ":" + tag.TagStr(),
			"org.opencontainers.image.ref.name": tag.TagStr(),
		}))
		if err != nil {
			return err
		}
	}
	data, err := layerTar(dir, time.Unix(0, 0).UTC())
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
