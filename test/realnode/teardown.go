package realnode

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Stop tears the node down and checks that the machine is as it was.
func (n *Node) Stop() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if n.kubelet != nil {
		add(n.kubelet.stop(10 * time.Second))
	}
	if n.ctrd != nil && !n.ctrd.exited() {
		// Every sandbox stopped through the runtime, so CNI DEL runs.
		cmd := exec.Command(filepath.Join(n.bin, "crictl"), "--runtime-endpoint", "unix://"+n.socket, "--timeout", "30s", "rmp", "-fa")
		if out, err := cmd.CombinedOutput(); err != nil {
			add(fmt.Errorf("crictl rmp -fa: %v: %s", err, out))
		}
	}
	if n.ctrd != nil {
		add(n.ctrd.stop(10 * time.Second))
	}
	add(removeCgroups(cgroupDirs(cgroupRoot)))
	if n.dir != "" {
		for _, p := range processesUnder(n.dir) { // shims, containers
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil {
				_ = killPid(pid)
			}
		}
	}
	if n.holder != nil {
		add(n.holder.stop(time.Second))
	}
	if n.dnat != nil {
		add(iptables("-D", n.dnat...))
	}
	if out, err := exec.Command("ip", "link", "del", Bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		add(fmt.Errorf("ip link del %s: %v: %s", Bridge, err, out))
	}
	if n.host != nil {
		add(n.host.restore())
	}
	if n.dir != "" {
		if m := mountsUnder(n.dir); len(m) > 0 {
			add(fmt.Errorf("mounts left on the host: %v", m))
		}
		if p := processesUnder(n.dir); len(p) > 0 {
			add(fmt.Errorf("processes left: %v", p))
		}
		add(os.RemoveAll(n.dir))
	}
	if n.host != nil {
		if d := n.host.check(); len(d) > 0 {
			add(fmt.Errorf("the machine differs after teardown: %s", strings.Join(d, "; ")))
		}
	}
	for _, d := range cgroupDirs(cgroupRoot) {
		if _, err := os.Stat(d); err == nil {
			add(fmt.Errorf("cgroup %s left", d))
		}
	}
	if _, err := net.InterfaceByName(Bridge); err == nil {
		add(fmt.Errorf("bridge %s left", Bridge))
	}
	return errors.Join(errs...)
}
