package cniconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gocni "github.com/containerd/go-cni"
)

// loadLikeContainerd loads the directory the way containerd's CRI plugin
// does: go-cni on the conf dir, the first config file by name.
func loadLikeContainerd(t *testing.T, dir string) (*gocni.ConfigResult, error) {
	t.Helper()
	c, err := gocni.New(gocni.WithPluginConfDir(dir), gocni.WithPluginDir([]string{t.TempDir()}), gocni.WithMinNetworkCount(1))
	if err != nil {
		return nil, err
	}
	if err := c.Load(gocni.WithDefaultConf); err != nil {
		return nil, err
	}
	return c.GetConfig(), nil
}

func TestContainerdLoadsWhatWeWrite(t *testing.T) {
	fixtures, _ := filepath.Glob(filepath.Join(fixtureDir(t), "calico-config-*.yaml"))
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			dir := t.TempDir()
			in := goldenInputs(fixtureData(t, filepath.Base(path)), clusterEnv)
			in.NetDir = dir
			want, err := BuildDesired(in, "")
			if err != nil {
				t.Fatal(err)
			}
			d := &Dir{NetDir: dir, BackupDir: t.TempDir(), StateDir: t.TempDir(), Policy: PolicyReport}
			if _, err := d.Sync(want, false); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadLikeContainerd(t, dir)
			if err != nil {
				t.Fatalf("containerd's loader refused %s: %v", want.Conf().Name, err)
			}
			if len(cfg.Networks) != 1 {
				t.Fatalf("%d networks loaded, want k8s-pod-network alone", len(cfg.Networks))
			}
			net := cfg.Networks[0].Config
			var body map[string]any
			if json.Unmarshal(want.Conf().Content, &body) != nil {
				t.Fatal("render not JSON")
			}
			wantPlugins := 1
			if p, ok := body["plugins"].([]any); ok {
				wantPlugins = len(p)
			}
			if net.Name != "k8s-pod-network" || len(net.Plugins) != wantPlugins || net.Plugins[0].Network.Type != "calico" {
				t.Errorf("loaded %q with %d plugins, want k8s-pod-network with %d, calico first", net.Name, len(net.Plugins), wantPlugins)
			}
		})
	}
}

// TestContainerdRefusesMismatchedNames shows why a name that contradicts the
// content is refused: containerd cannot load either mismatch.
func TestContainerdRefusesMismatchedNames(t *testing.T) {
	list := fixtureData(t, "calico-config-v3.32.yaml")
	single := fixtureData(t, "calico-config-v2.6-etcd.yaml")
	for _, tc := range []struct {
		data map[string]string
		name string
	}{{list, "10-calico.conf"}, {single, "10-calico.conflist"}} {
		dir := t.TempDir()
		in := goldenInputs(tc.data, clusterEnv)
		conf, err := RenderTemplate(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ConfName(tc.name, conf); err == nil {
			t.Errorf("ConfName accepted %s for this content", tc.name)
		}
		if err := os.WriteFile(filepath.Join(dir, tc.name), conf, 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg, err := loadLikeContainerd(t, dir); err == nil && len(cfg.Networks) > 0 && len(cfg.Networks[0].Config.Plugins) > 0 &&
			cfg.Networks[0].Config.Plugins[0].Network.Type == "calico" {
			t.Errorf("containerd loaded a mismatched %s; the refusal would be needless", tc.name)
		}
	}
}

// TestReaderNeverSeesPartialFile rewrites the file 1000 times while a reader
// loads it in a tight loop, as a runtime might.
func TestReaderNeverSeesPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultConfListName)
	in := goldenInputs(fixtureData(t, "calico-config-v3.32.yaml"), clusterEnv)
	a, err := RenderTemplate(in)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(a, []byte(`"mtu": 0,`), []byte(`"mtu": 1440, "pad": "`+strings.Repeat("x", 8192)+`",`), 1)
	if _, err := WriteAtomic(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, bad int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(path)
			reads++
			if err != nil || (!bytes.Equal(data, a) && !bytes.Equal(data, b)) {
				bad++
			}
		}
	}()
	for i := 0; i < 1000; i++ {
		next := a
		if i%2 == 0 {
			next = b
		}
		if _, err := WriteAtomic(path, next, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != 0 || reads == 0 {
		t.Fatalf("%d of %d reads saw a missing or partial file", bad, reads)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %d entries", len(entries))
	}
}

func TestWriteAtomicSkipsEqualBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.conflist")
	for i, want := range []bool{true, false} {
		wrote, err := WriteAtomic(path, []byte("{}"), 0o600)
		if err != nil || wrote != want {
			t.Fatalf("write %d: wrote=%v err=%v, want wrote=%v", i, wrote, err, want)
		}
	}
	if wrote, _ := WriteAtomic(path, []byte("{}"), 0o644); !wrote {
		t.Fatal("a mode change was not written")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestBackupRetention(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 25; i++ {
		if _, err := Backup(dir, "10-calico.conf", fmt.Appendf(nil, "edit %d", i), fixedTime(i), 20); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Backup(dir, "10-calico.conflist", []byte("y"), fixedTime(0), 20); err != nil {
		t.Fatal(err)
	}
	conf, _ := filepath.Glob(filepath.Join(dir, "10-calico.conf.*.bak"))
	list, _ := filepath.Glob(filepath.Join(dir, "10-calico.conflist.*.bak"))
	if len(conf) != 20 || len(list) != 1 {
		t.Fatalf("%d conf and %d conflist backups, want 20 and 1", len(conf), len(list))
	}
	if !strings.Contains(conf[0], fixedTime(5).UTC().Format("20060102T150405")) {
		t.Fatalf("oldest kept is %s, want the 6th", conf[0])
	}
	if fi, _ := os.Stat(conf[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v", fi.Mode())
	}
}

// TestBackupOfAPersistentEditIsMadeOnce: the same content is backed up once.
func TestBackupOfAPersistentEditIsMadeOnce(t *testing.T) {
	dir := t.TempDir()
	first, err := Backup(dir, "10-calico.conflist", []byte("edit"), fixedTime(0), 20)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Backup(dir, "10-calico.conflist", []byte("edit"), fixedTime(1), 20)
	if err != nil || again != first {
		t.Fatalf("second backup of the same edit: %s (%v), want %s", again, err, first)
	}
}

// TestBackupSurvivesAClockSetBack: a backup named before every other by a
// clock set back is still kept by the run that made it.
func TestBackupSurvivesAClockSetBack(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		if _, err := Backup(dir, "10-calico.conflist", fmt.Appendf(nil, "edit %d", i), fixedTime(30+i), 3); err != nil {
			t.Fatal(err)
		}
	}
	made, err := Backup(dir, "10-calico.conflist", []byte("after the clock jumped"), fixedTime(0), 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(made); err != nil {
		t.Fatalf("the backup just made was pruned: %v", err)
	}
	if all, _ := filepath.Glob(filepath.Join(dir, "*.bak")); len(all) != 3 {
		t.Fatalf("%d backups, want 3", len(all))
	}
}
