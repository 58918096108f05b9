package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/client-go/tools/clientcmd"
)

// The soak's reader: like the sampler of the agent process
// (soak_process_test.go), it runs beside the schedule and never fails the test
// itself: it counts, and the test judges at the end.

// soakReader loads the CNI directory as libcni-based runtimes (containerd,
// CRI-O) do before every pod, and calico-kubeconfig as the Calico plugin
// does, every few milliseconds. A file that cannot be parsed is a partial
// write some pod would have failed on; a conflist without the hand edit the
// test put in place is an edit lost.
type soakReader struct {
	net string
	// edit is the MTU of the hand edit in place, nil when there is none.
	// The test replaces the pointer whenever the expectation changes, so a
	// load that overlapped a change is not judged by the wrong one.
	edit atomic.Pointer[int]

	loads, kubeconfigLoads, absent atomic.Int64

	mu       sync.Mutex
	failures []string // the first few, with the count in nfailures
	lost     []string // loads without the hand edit in place
	nfail    int
	nlost    int
}

func (r *soakReader) expectEdit(mtu int) { r.edit.Store(&mtu) }
func (r *soakReader) expectNoEdit()      { r.edit.Store(nil) }

func (r *soakReader) run(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		r.loadOnce()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (r *soakReader) loadOnce() {
	edit := r.edit.Load()
	files, err := libcni.ConfFiles(r.net, []string{".conf", ".conflist", ".json"})
	if err != nil {
		r.fail("list %s: %v", r.net, err)
		return
	}
	if len(files) == 0 {
		r.absent.Add(1) // removed with its directory, or by an undo
	}
	for _, f := range files {
		if filepath.Base(f) != "10-calico.conflist" {
			r.fail("a runtime would load %s", filepath.Base(f))
			continue
		}
		list, err := libcni.ConfListFromFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			r.absent.Add(1)
			continue
		}
		if err != nil {
			r.fail("load %s: %v", f, err)
			continue
		}
		mtu, err := calicoMTU(list.Bytes)
		if err != nil {
			r.fail("%s: %v", f, err)
			continue
		}
		r.loads.Add(1)
		if edit != nil && r.edit.Load() == edit && mtu != *edit {
			r.mu.Lock()
			r.nlost++
			if len(r.lost) < 5 {
				r.lost = append(r.lost, fmt.Sprintf("%s: mtu %d while the hand edit %d was in place", time.Now().Format(time.StampMilli), mtu, *edit))
			}
			r.mu.Unlock()
		}
	}
	b, err := os.ReadFile(filepath.Join(r.net, "calico-kubeconfig"))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		r.fail("read calico-kubeconfig: %v", err)
		return
	}
	if _, err := kubeconfigToken(b); err != nil {
		r.fail("calico-kubeconfig: %v", err)
		return
	}
	r.kubeconfigLoads.Add(1)
}

func (r *soakReader) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nfail++
	if len(r.failures) < 5 {
		r.failures = append(r.failures, time.Now().Format(time.StampMilli)+": "+fmt.Sprintf(format, args...))
	}
}

// check fails the test for every failed or edit-less load seen.
func (r *soakReader) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nfail > 0 {
		t.Errorf("the reader could not load the CNI files %d times; first: %s", r.nfail, strings.Join(r.failures, "; "))
	}
	if r.nlost > 0 {
		t.Errorf("the reader saw a hand edit lost %d times; first: %s", r.nlost, strings.Join(r.lost, "; "))
	}
	if r.loads.Load() == 0 || r.kubeconfigLoads.Load() == 0 {
		t.Errorf("the reader loaded nothing (%d conflists, %d kubeconfigs)", r.loads.Load(), r.kubeconfigLoads.Load())
	}
}

// calicoMTU is the MTU of the calico plugin, the first of the list.
func calicoMTU(conflist []byte) (int, error) {
	var c struct {
		Plugins []struct {
			Type string `json:"type"`
			MTU  *int   `json:"mtu"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &c); err != nil {
		return 0, err
	}
	if len(c.Plugins) == 0 || c.Plugins[0].Type != "calico" || c.Plugins[0].MTU == nil {
		return 0, errors.New("the first plugin is not calico with an mtu")
	}
	return *c.Plugins[0].MTU, nil
}

// kubeconfigToken is the one token calico-kubeconfig holds.
func kubeconfigToken(b []byte) (string, error) {
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return "", err
	}
	for _, u := range cfg.AuthInfos {
		if u.Token != "" {
			return u.Token, nil
		}
	}
	return "", errors.New("no token")
}
