package realnode

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
)

// configs are the node's configuration files, rendered into its state
// directory: everything containerd and the kubelet keep lives there, but for
// the few fixed host paths hostPaths lists.
var configs = map[string]string{
	// containerd 2.x, config version 3.
	"containerd.toml": `version = 3
root = "{{.Dir}}/containerd/root"
state = "{{.Dir}}/containerd/state"

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{{.Dir}}/opt"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.Pause}}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE runc cannot lower a sandbox's oom_score_adj
  # below containerd's own: clamp it there.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{{.Runc}}"
        SystemdCgroup = false
        Root = "{{.Dir}}/runc"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.Dir}}/cni/bin"]
    conf_dir = "{{.CNIDir}}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`,
	// The kubelet on loopback, cgroupfs under its own root (cgroup v1 is
	// allowed), no eviction on a busy disk, fast status updates.
	"kubelet.yaml": `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: {{.CgroupRoot}}
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://{{.Socket}}
imageServiceEndpoint: unix://{{.Socket}}
address: 127.0.0.1
port: {{.KubeletPort}}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: {{.Dir}}/etc/resolv.conf
podLogsDir: {{.Dir}}/pod-logs
volumePluginDir: {{.Dir}}/kubelet/volume-plugins
staticPodPath: ""
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
makeIPTablesUtilChains: false
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
syncFrequency: 5s
podPidsLimit: -1
maxPods: 30
serializeImagePulls: false
`,
}

// render writes etc/NAME from the template of that name.
func (n *Node) render(name string) error {
	tmpl, err := template.New(name).Parse(configs[name])
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(n.dir, "etc", name))
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	port, err := freePort()
	if err != nil {
		return err
	}
	return tmpl.Execute(f, map[string]string{
		"KubeletPort": port, "Dir": n.dir, "Socket": n.socket, "CNIDir": CNIDir, "Runc": mustLookPath("runc"),
		"CgroupRoot": "/" + cgroupRoot, "Pause": pauseImage,
	})
}

// freePort is a loopback port nothing listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func mustLookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name
	}
	return p
}
