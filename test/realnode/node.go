// Package realnode runs a real Kubernetes node on the test machine for the
// end-to-end tests: a kubelet and containerd (built from their Go modules
// into test/bin by make node), Debian's runc and reference CNI plugins, and
// a stand-in for Calico's CNI plugin that authenticates exactly where
// Calico's does, registered with the test control plane
// (test/controlplane with Options.Nodes). Pods get real sandboxes, network
// namespaces and bridge addresses; the kubelet gives them projected tokens
// and hostPath mounts; DaemonSets are scheduled onto the node.
//
// What is real and what stands in:
//   - real: kube-apiserver, etcd, kube-controller-manager, kube-scheduler,
//     the kubelet, containerd and its CRI plugin (which loads the CNI
//     directory the agent writes), runc, the bridge, host-local, bandwidth
//     and portmap plugins, the agent's image as make image builds it;
//   - stand-ins: Calico's CNI plugin (calico-plugin: Calico's credentials
//     and first request, the conf's mtu held to UnderlayMTU, then bridge and
//     host-local), the programs of
//     Calico's images (calico-image: init containers and probes succeed,
//     main containers sleep), the pause image, and kube-proxy (one DNAT
//     rule from the `kubernetes` Service address to the API server).
//
// Everything runs on loopback or on the node's own bridge, with the node's
// processes in a mount namespace of their own (so that the kubelet's mounts
// and Calico's Bidirectional mount propagation stay off the host).
// Teardown leaves the machine as it found it: processes, mounts, cgroups,
// the bridge, the netfilter ruleset, the sysctls the kubelet and the bridge
// plugin change, and the host paths the run created; Stop checks it.
//
// One node runs per machine at a time: the node uses the machine's
// /etc/cni/net.d, as the agent's manifests say.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/test/controlplane"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	// Name is the node's name. The kubelet is given it as its hostname.
	Name = "localhost"
	// CNIDir is where containerd loads the network configuration from and
	// the agent writes it: the host path of the agent's manifests.
	CNIDir = "/etc/cni/net.d"
	// Bridge and Subnet are the pods' network (no route off the machine).
	Bridge = "cnisync0"
	Subnet = "10.244.77.0/24"
	// UnderlayMTU is the MTU of the network under the pods' as the Calico
	// stand-in sees it (an Ethernet underlay): a conf whose mtu is above it
	// fails ADD, as a pod with that MTU would fail on the wire.
	UnderlayMTU = 1500
	// cgroupRoot is the kubelet's cgroup root in every hierarchy.
	cgroupRoot = "calico-cni-sync-node"
	// pauseImage is the sandbox image containerd is pinned to.
	pauseImage = "registry.k8s.io/pause:3.10"
)

// Node is a running kubelet and containerd registered with a control plane.
type Node struct {
	cp      *controlplane.ControlPlane
	repo    string // the repository's root
	bin     string // test/bin
	dir     string // all of the node's state
	socket  string // containerd's
	host    *hostState
	holder  *proc // the mount namespace's first process
	ctrd    *proc
	kubelet *proc
	dnat    []string // the iptables rule standing in for kube-proxy
	logf    func(string, ...any)
}

// Start brings a node up and registers its teardown with t.Cleanup. The
// node is registered but NotReady until a CNI configuration appears in
// CNIDir. It fails the test (never skips it) when something is missing.
func Start(t *testing.T, cp *controlplane.ControlPlane) *Node {
	t.Helper()
	n, err := start(t, cp)
	if n != nil {
		t.Cleanup(func() {
			if err := n.Stop(); err != nil {
				t.Errorf("real node teardown: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start the real node: %v", err)
	}
	return n
}

func start(t *testing.T, cp *controlplane.ControlPlane) (*Node, error) {
	begin := time.Now()
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	n := &Node{cp: cp, repo: repo, bin: filepath.Join(repo, "test", "bin"), logf: t.Logf}
	if err := n.preflight(); err != nil {
		return nil, err
	}
	if n.host, err = snapshotHost(); err != nil {
		return nil, err
	}
	if n.dir, err = os.MkdirTemp("", "realnode-"); err != nil {
		return n, err
	}
	n.socket = filepath.Join(n.dir, "containerd", "containerd.sock")
	for _, d := range []string{"logs", "etc", "cni/bin", "cni/ipam", "kubelet", "pod-logs", "images", "opt", "runc", "containerd"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return n, err
		}
	}
	for _, p := range mustExist {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return n, err
		}
	}
	if err := n.prepareCgroups(); err != nil {
		return n, err
	}
	if err := n.installPlugins(); err != nil {
		return n, err
	}
	if err := n.routeServiceIP(); err != nil {
		return n, err
	}
	if err := n.startContainerd(); err != nil {
		return n, err
	}
	if err := n.loadStandInImages(); err != nil {
		return n, err
	}
	if err := n.startKubelet(); err != nil {
		return n, err
	}
	n.logf("realnode: node %s registered %v after start", Name, time.Since(begin).Round(time.Millisecond))
	return n, nil
}

// preflight checks what the node needs from the machine and the build.
func (n *Node) preflight() error {
	var missing []string
	for _, b := range []string{"kubelet", "containerd", "ctr", "containerd-shim-runc-v2", "crictl", "imagebuild"} {
		if _, err := os.Stat(filepath.Join(n.bin, b)); err != nil {
			missing = append(missing, "test/bin/"+b+" (make node)")
		}
	}
	for _, b := range []string{"runc", "iptables", "nft", "unshare", "nsenter"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (make node-packages)")
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "bandwidth", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			missing = append(missing, "/usr/lib/cni/"+p+" (make node-packages)")
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the node needs it)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the real node needs: %s", strings.Join(missing, ", "))
	}
	if entries, _ := os.ReadDir(CNIDir); len(entries) > 0 {
		return fmt.Errorf("%s is not empty on this machine: the real node would use it", CNIDir)
	}
	return nil
}

// prepareCgroups makes the kubelet's cgroup root; a v1 cpuset child needs
// its cpus and mems set before anything can join it.
func (n *Node) prepareCgroups() error {
	for _, d := range cgroupDirs(cgroupRoot) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if strings.Contains(d, "/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// installPlugins fills the node's CNI plugin directory: Debian's reference
// plugins and the Calico stand-in as `calico`.
func (n *Node) installPlugins() error {
	bin := filepath.Join(n.dir, "cni", "bin")
	for _, p := range []string{"bridge", "host-local", "loopback", "bandwidth", "portmap"} {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(bin, p)); err != nil {
			return err
		}
	}
	return n.goBuild(filepath.Join(bin, "calico"), "./test/realnode/calico-plugin")
}

// goBuild builds a static binary of this module.
func (n *Node) goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = n.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// routeServiceIP stands in for kube-proxy: the `kubernetes` Service's
// address, which the kubelet gives every pod, leads to the API server.
func (n *Node) routeServiceIP() error {
	host, port, err := net.SplitHostPort(n.cp.Host())
	if err != nil {
		return err
	}
	n.dnat = []string{"-t", "nat", "OUTPUT", "-d", controlplane.ServiceIP + "/32", "-p", "tcp", "--dport", "443",
		"-j", "DNAT", "--to-destination", net.JoinHostPort(host, port)}
	return iptables("-A", n.dnat...)
}

func iptables(op string, rule ...string) error {
	args := append([]string{"-w", rule[0], rule[1], op}, rule[2:]...)
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// inNamespace runs argv in the node's mount namespace.
func (n *Node) inNamespace(argv ...string) []string {
	return append([]string{"nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", n.holder.cmd.Process.Pid), "--"}, argv...)
}

func (n *Node) startContainerd() error {
	var err error
	// A mount namespace of the node's own, its mounts shared within it:
	// what the kubelet and containerd mount stays there, and goes with it.
	n.holder, err = startProc("mount-namespace", filepath.Join(n.dir, "logs"), nil,
		"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "mount --make-rshared / && exec sleep infinity")
	if err != nil {
		return err
	}
	if err := n.render("containerd.toml"); err != nil {
		return err
	}
	env := []string{
		"PATH=" + n.bin + ":" + os.Getenv("PATH"), // the runc shim
		"CALICO_STANDIN_BRIDGE=" + Bridge, "CALICO_STANDIN_SUBNET=" + Subnet,
		"CALICO_STANDIN_IPAM_DIR=" + filepath.Join(n.dir, "cni", "ipam"),
		"CALICO_STANDIN_UNDERLAY_MTU=" + strconv.Itoa(UnderlayMTU),
	}
	// The namespace is ready once its root is shared.
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true,
		func(context.Context) (bool, error) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", n.holder.cmd.Process.Pid))
			return err == nil && strings.Contains(strings.SplitN(string(b), "\n", 2)[0], "shared:"), nil
		})
	if err != nil {
		return fmt.Errorf("mount namespace not ready%s", n.holder.tail())
	}
	n.ctrd, err = startProc("containerd", filepath.Join(n.dir, "logs"), env,
		n.inNamespace(filepath.Join(n.bin, "containerd"), "--config", filepath.Join(n.dir, "etc", "containerd.toml"))...)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return n.ctr("version") == nil, nil })
	if err != nil {
		return fmt.Errorf("containerd did not answer%s", n.ctrd.tail())
	}
	return nil
}

// ctr runs containerd's ctr in the kubelet's namespace of images.
func (n *Node) ctr(args ...string) error {
	argv := append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)
	out, err := exec.Command(filepath.Join(n.bin, "ctr"), argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ImportImage loads an image archive on the node, as the README tells an
// operator to: ctr -n k8s.io images import ARCHIVE.
func (n *Node) ImportImage(archive string) error {
	return n.ctr("images", "import", archive)
}

func (n *Node) startKubelet() error {
	cfg, err := n.cp.AddUser("system:node:"+Name, "system:nodes")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(n.dir, "etc", "kubelet.kubeconfig")
	if err := n.cp.WriteKubeconfig(kubeconfig, cfg); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "etc", "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	if err := n.render("kubelet.yaml"); err != nil {
		return err
	}
	n.kubelet, err = startProc("kubelet", filepath.Join(n.dir, "logs"), nil, n.inNamespace(filepath.Join(n.bin, "kubelet"),
		"--config", filepath.Join(n.dir, "etc", "kubelet.yaml"), "--kubeconfig", kubeconfig,
		"--hostname-override", Name, "--root-dir", filepath.Join(n.dir, "kubelet"),
		"--cert-dir", filepath.Join(n.dir, "kubelet", "pki"), "--v", "2")...)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true,
		func(ctx context.Context) (bool, error) {
			if n.kubelet.exited() {
				return false, errors.New("the kubelet exited")
			}
			_, err := n.cp.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
			return err == nil, nil
		})
	if err != nil {
		return fmt.Errorf("node %s did not register: %w%s", Name, err, n.kubelet.tail())
	}
	return nil
}

// Ready reports the node's Ready condition.
func (n *Node) Ready(ctx context.Context) (bool, error) {
	node, err := n.cp.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// Logs is the directory of the node's process logs, for a failing test.
func (n *Node) Logs() string { return filepath.Join(n.dir, "logs") }

// repoRoot is the directory of this module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
