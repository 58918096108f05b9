// Package crash proves the record of what was written is crash-safe: a real
// --once process is killed with SIGKILL at random moments, hundreds of times,
// while a reader loads the CNI directory as a container runtime does.
package crash

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "calico-cni-sync-crash")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		// The binary as it ships: the race detector would slow each run
		// and move the moments the kills land on.
		binary = filepath.Join(dir, "calico-cni-sync")
		build := exec.Command("go", "build", "-o", binary, "../../cmd/calico-cni-sync")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build calico-cni-sync: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

const token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLW5vZGUifQ.c2lnbmF0dXJlQQ"

// node is one node's directories and two ConfigMaps that differ in one
// value, to alternate between.
type node struct {
	dir, net   string
	configMaps [2]string
	conf       string    // the conf file's name
	values     [2]string // what tells the two renders apart in the conf
}

func newNode(t *testing.T, fixture, key string, values [2]string, conf string) *node {
	t.Helper()
	n := &node{dir: t.TempDir(), conf: conf}
	n.net = filepath.Join(n.dir, "net")
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", fixture))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^  ` + key + `: .*$`)
	if !line.Match(raw) {
		t.Fatalf("%s has no %s", fixture, key)
	}
	for i, v := range values {
		n.configMaps[i] = filepath.Join(n.dir, fmt.Sprintf("cm%d.yaml", i))
		n.values[i] = v
		data := line.ReplaceAll(raw, []byte(fmt.Sprintf("  %s: %q", key, v)))
		must(t, os.WriteFile(n.configMaps[i], data, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(n.dir, "token"), []byte(token), 0o600))
	must(t, os.WriteFile(filepath.Join(n.dir, "ca.crt"), []byte("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"), 0o644))
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start launches --once with the i-th ConfigMap, offline.
func (n *node) start(i int, out *bytes.Buffer) *exec.Cmd {
	cmd := exec.Command(binary, "--once", "--node-name", "node-1",
		"--configmap-file", n.configMaps[i%2], "--token-file", filepath.Join(n.dir, "token"),
		"--ca-file", filepath.Join(n.dir, "ca.crt"), "--cni-net-dir", n.net,
		"--state-dir", filepath.Join(n.dir, "state"), "--backup-dir", filepath.Join(n.dir, "backups"))
	cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443")
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// runToEnd runs --once with the i-th ConfigMap and checks that it applied
// it and took nothing of its own for a hand edit.
func (n *node) runToEnd(t *testing.T, i int) time.Duration {
	t.Helper()
	var out bytes.Buffer
	cmd := n.start(i, &out)
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	n.checkCompleted(t, i, err, out.String())
	return took
}

func (n *node) checkCompleted(t *testing.T, i int, err error, out string) {
	t.Helper()
	if err != nil {
		t.Fatalf("run %d: %v\n%s", i, err, out)
	}
	if strings.Contains(out, "Drifted") {
		t.Fatalf("run %d took its own write for a hand edit:\n%s", i, out)
	}
	b, rerr := os.ReadFile(filepath.Join(n.net, n.conf))
	must(t, rerr)
	if !strings.Contains(string(b), n.values[i%2]) {
		t.Fatalf("run %d did not apply its ConfigMap (%s):\n%s", i, n.values[i%2], b)
	}
}

// reader loads the directory as libcni-based runtimes (containerd, CRI-O)
// do, until stopped, and counts what it could not load.
func reader(ctx context.Context, dir string, loads, failures *atomic.Int64, first *atomic.Value) {
	for ctx.Err() == nil {
		files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
		if err != nil {
			continue
		}
		for _, f := range files {
			if strings.HasSuffix(f, ".conflist") {
				_, err = libcni.ConfListFromFile(f)
			} else {
				// A single-plugin .conf, as containerd's go-cni
				// loads one before wrapping it in a list.
				var b []byte
				if b, err = os.ReadFile(f); err == nil {
					_, err = libcni.NetworkPluginConfFromBytes(b)
				}
			}
			loads.Add(1)
			if err != nil && !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
				failures.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		}
	}
}

func TestOnceKilledAtRandomMoments(t *testing.T) {
	cases := []struct {
		name, fixture, key, conf string
		values                   [2]string
		runs                     int
	}{
		{name: "conflist", fixture: "calico-config-v3.32.yaml", key: "veth_mtu", conf: "10-calico.conflist",
			values: [2]string{"1440", "1460"}, runs: 200},
		{name: "conf", fixture: "calico-config-v2.6-etcd.yaml", key: "etcd_endpoints", conf: "10-calico.conf",
			values: [2]string{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}, runs: 120},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.fixture, tc.key, tc.values, tc.conf)
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))

			// How long a run takes to the end, so the kills spread over it.
			var took []time.Duration
			for i := range 4 {
				took = append(took, n.runToEnd(t, i))
			}
			slices.Sort(took)
			span := took[len(took)/2]

			ctx, stop := context.WithCancel(context.Background())
			var loads, failures atomic.Int64
			var firstFailure atomic.Value
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); reader(ctx, n.net, &loads, &failures, &firstFailure) }()
			defer func() { stop(); wg.Wait() }()

			killed := 0
			for i := range tc.runs {
				if rng.IntN(3) == 0 {
					n.runToEnd(t, i)
					continue
				}
				var out bytes.Buffer
				cmd := n.start(i, &out)
				must(t, cmd.Start())
				delay := time.Duration(rng.Int64N(int64(span) * 6 / 5))
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done: // finished before the kill
					n.checkCompleted(t, i, err, out.String())
				case <-time.After(delay):
					_ = cmd.Process.Kill()
					<-done //nolint:errcheck // killed: the exit status says so
					killed++
					if strings.Contains(out.String(), "Drifted") {
						t.Fatalf("killed run %d reported Drifted:\n%s", i, out.String())
					}
				}
			}
			// The next ConfigMap change is applied, and what killed
			// writers left behind is cleared.
			n.runToEnd(t, tc.runs)
			n.runToEnd(t, tc.runs+1)
			stop()
			wg.Wait()
			t.Logf("%d runs, %d killed, a run takes %v; the reader loaded %d files", tc.runs, killed, span, loads.Load())
			if killed < tc.runs/4 {
				t.Errorf("only %d runs were killed before they ended", killed)
			}
			if f := failures.Load(); f > 0 {
				t.Errorf("the reader could not load the directory %d times; first: %v", f, firstFailure.Load())
			}
			if loads.Load() == 0 {
				t.Error("the reader loaded nothing")
			}
			temp := regexp.MustCompile(`^\..*[0-9]+$`)
			_ = filepath.WalkDir(n.dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && temp.MatchString(d.Name()) {
					t.Errorf("temporary file left behind: %s", p)
				}
				return nil
			})
		})
	}
}
