package realnode

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// hostPaths are the host paths a node run may create: the kubelet's and
// containerd's fixed places (whatever their configuration says), and every
// hostPath of the DaemonSets the tests apply (Calico's installs, canal's,
// the operator's, and the agent's own). A snapshot records which of them
// exist, and teardown removes the ones the run created.
var hostPaths = []string{
	"/etc/cni", "/opt/cni", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods",
	"/run/containerd", "/var/lib/calico-cni-sync", "/run/calico-cni-sync", "/run/calico", "/var/lib/calico",
	"/var/log/calico", "/run/xtables.lock", "/run/nodeagent", "/usr/libexec/kubernetes", "/run/flannel",
	"/lib/modules",
}

// mustExist are hostPaths Calico's DaemonSets mount with no type, which the
// kubelet does not create: a machine without them (a VM with a built-in
// kernel has no /lib/modules) gets an empty directory for the run.
var mustExist = []string{"/lib/modules"}

// sysctls are the settings the kubelet rewrites at start (kernel.panic,
// overcommit, ...) and the bridge plugin changes (ip_forward).
var sysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

// hostState is what a node run may change on the machine, as it was before.
type hostState struct {
	existed map[string]bool   // hostPaths
	sysctl  map[string]string // sysctls
	nft     string            // the netfilter ruleset
}

func snapshotHost() (*hostState, error) {
	h := &hostState{existed: map[string]bool{}, sysctl: map[string]string{}}
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		h.existed[p] = err == nil
	}
	for _, s := range sysctls {
		v, err := readSysctl(s)
		if err != nil {
			return nil, err
		}
		h.sysctl[s] = v
	}
	var err error
	h.nft, err = ruleset()
	return h, err
}

// restore undoes what the run changed, as far as it can, and returns every
// difference it could not undo: a test fails on them.
func (h *hostState) restore() error {
	var errs []error
	for s, v := range h.sysctl {
		if now, err := readSysctl(s); err == nil && now != v {
			if err := os.WriteFile(sysctlPath(s), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", s, v, err))
			}
		}
	}
	for _, p := range hostPaths {
		if !h.existed[p] {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
	}
	if now, err := ruleset(); err == nil && now != h.nft {
		// Tables the run created (iptables makes an empty nat table when a
		// rule is added and leaves it): flush the ruleset back.
		if err := restoreRuleset(h.nft); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// check lists what still differs from the snapshot.
func (h *hostState) check() []string {
	var diffs []string
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		if exists := err == nil; exists != h.existed[p] {
			diffs = append(diffs, fmt.Sprintf("host path %s: existed %v, exists %v", p, h.existed[p], exists))
		}
	}
	for s, v := range h.sysctl {
		if now, _ := readSysctl(s); now != v {
			diffs = append(diffs, fmt.Sprintf("sysctl %s: was %s, is %s", s, v, now))
		}
	}
	if now, _ := ruleset(); now != h.nft {
		diffs = append(diffs, "netfilter ruleset changed:\n"+now)
	}
	sort.Strings(diffs)
	return diffs
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func ruleset() (string, error) {
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list ruleset: %v: %s", err, out)
	}
	return string(out), nil
}

func restoreRuleset(before string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString("flush ruleset\n" + before)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restore the netfilter ruleset: %v: %s", err, out)
	}
	return nil
}

// cgroupDirs are the node's cgroup root in every mounted hierarchy.
func cgroupDirs(root string) []string {
	var dirs []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), root))
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // cgroup v2 alone
		dirs = []string{filepath.Join("/sys/fs/cgroup", root)}
	}
	return dirs
}

// removeCgroups kills every process left in the cgroups under dirs and
// removes them, deepest first.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		var tree []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				tree = append(tree, p)
			}
			return nil
		})
		for i := len(tree) - 1; i >= 0; i-- {
			killCgroup(tree[i])
			if err := rmdirRetry(tree[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
