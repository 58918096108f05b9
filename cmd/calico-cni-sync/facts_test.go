package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepairKeepsWhatTheNodeWasGiven: a --once that would change a value
// the last write took from the node's environment refuses, naming it, the
// recorded value and the flag, and writes nothing; --accept-env-change lets
// it through.
func TestRepairKeepsWhatTheNodeWasGiven(t *testing.T) {
	cases := []struct {
		name   string
		first  func(n *node)
		second func(n *node) []string
		want   []string
	}{
		{name: "node name", first: func(n *node) {},
			second: func(n *node) []string { return []string{"--node-name", "node-2"} },
			want:   []string{"nodeName", `"node-1"`, `"node-2"`, "--node-name", "--accept-env-change"}},
		{name: "API address", first: func(n *node) {},
			second: func(n *node) []string { n.t.Setenv("KUBERNETES_SERVICE_HOST", "192.0.2.10"); return nil },
			want:   []string{"apiServer", "https://10.96.0.1:443", "https://192.0.2.10:443", "KUBERNETES_SERVICE_HOST"}},
		{name: "MTU from the environment", first: func(n *node) { n.t.Setenv("CNI_MTU", "1440") },
			second: func(n *node) []string { n.t.Setenv("CNI_MTU", "1500"); return nil },
			want:   []string{"mtu", `"1440"`, `"1500"`, "CNI_MTU"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			tc.first(n)
			n.once()
			files := func() string { return n.read("10-calico.conflist") + n.read("calico-kubeconfig") }
			before := files()
			extra := tc.second(n)
			code, out := n.run(append([]string{"--once"}, extra...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the refusal lacks %s:\n%s", w, out)
				}
			}
			if files() != before {
				t.Fatal("a refused repair changed a file")
			}
			if code, out := n.run(append([]string{"--once", "--accept-env-change"}, extra...)...); code != 0 {
				t.Fatalf("--accept-env-change: exit %d\n%s", code, out)
			}
			if files() == before {
				t.Fatal("--accept-env-change did not write the change")
			}
		})
	}
}

// TestRepairFollowsTheCluster: a value install-cni's environment takes from
// the cluster is none of the node's: a --once after it changed (calico-config's
// veth_mtu, the kubernetes-services-endpoint ConfigMap's address) writes the
// change, while a change of this command's own environment is still refused.
func TestRepairFollowsTheCluster(t *testing.T) {
	const endpoint = `apiVersion: v1
kind: ConfigMap
metadata:
  name: kubernetes-services-endpoint
  namespace: kube-system
data:
  KUBERNETES_SERVICE_HOST: "192.0.2.10"
  KUBERNETES_SERVICE_PORT: "6443"`
	cases := []struct {
		name        string
		extra       []string
		old, new    string
		file, wrote string
	}{
		{name: "veth_mtu", old: `veth_mtu: "0"`, new: `veth_mtu: "1400"`,
			file: "10-calico.conflist", wrote: `"mtu": 1400`},
		{name: "kubernetes-services-endpoint", extra: []string{endpoint}, old: `"192.0.2.10"`, new: `"192.0.2.11"`,
			file: "calico-kubeconfig", wrote: "https://192.0.2.11:6443"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, "calico-config-v3.32.yaml")
			manifest := offlineManifest(n, tc.extra...)
			args := []string{"--once", "--manifest-file", manifest, "--configmap-file", ""}
			if code, out := n.run(args...); code != 0 {
				t.Fatalf("first --once: exit %d\n%s", code, out)
			}
			b, err := os.ReadFile(manifest)
			must(t, err)
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("the manifest lacks %s", tc.old)
			}
			must(t, os.WriteFile(manifest, []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o600))
			if code, out := n.run(args...); code != 0 {
				t.Fatalf("--once after %s changed in the cluster: exit %d\n%s", tc.name, code, out)
			}
			if got := n.read(tc.file); !strings.Contains(got, tc.wrote) {
				t.Fatalf("%s lacks %s after the repair:\n%s", tc.file, tc.wrote, got)
			}
		})
	}

	t.Run("this command's environment", func(t *testing.T) {
		n := newNode(t, "calico-config-v3.32.yaml")
		manifest := offlineManifest(n)
		args := []string{"--once", "--manifest-file", manifest, "--configmap-file", ""}
		if code, out := n.run(args...); code != 0 {
			t.Fatalf("first --once: exit %d\n%s", code, out)
		}
		t.Setenv("KUBERNETES_SERVICE_HOST", "192.0.2.20")
		code, out := n.run(args...)
		if code != 2 || !strings.Contains(out, "$KUBERNETES_SERVICE_HOST and $KUBERNETES_SERVICE_PORT in this command's environment") {
			t.Fatalf("a change of the command's own API address: exit %d, want 2 naming where it comes from\n%s", code, out)
		}
	})
}

// TestNodeNameFallsBackToTheRecord: a repair on the node with neither
// --node-name nor the agent's environment uses the name the files were
// written for, not the hostname.
func TestNodeNameFallsBackToTheRecord(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	n.once() // as node-1
	t.Setenv("KUBERNETES_NODE_NAME", "")
	t.Setenv("NODE_NAME", "")
	code, out := n.run("drift", "--node-name", "", "-o", "json")
	if code != 0 || !strings.Contains(out, `"node": "node-1"`) {
		t.Fatalf("drift without a node name: exit %d\n%s", code, out)
	}
}

// TestStatusFileOnlyWhenGiven: --once and drift write the status file when
// --status-file is given, never the agent's default.
func TestStatusFileOnlyWhenGiven(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	status := n.dir + "/status.json"
	n.once()
	if _, err := os.Stat(status); !os.IsNotExist(err) {
		t.Fatal("a status file was written without --status-file")
	}
	if code, out := n.run("drift", "--status-file", status); code != 0 {
		t.Fatalf("drift: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(status)
	must(t, err)
	if !strings.Contains(string(b), `"node": "node-1"`) {
		t.Fatalf("status file %s", b)
	}
	if fi, _ := os.Stat(status); fi.Mode().Perm() != 0o600 {
		t.Fatalf("status file mode %s", fi.Mode().Perm())
	}
}

// TestErrorsNameTheirCause: a PEM in the token file says the files look
// swapped; an Error on a single-plugin template names 10-calico.conf, the
// file that template is for.
func TestErrorsNameTheirCause(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	ca, err := os.ReadFile(n.ca)
	must(t, err)
	must(t, os.WriteFile(n.tok, ca, 0o600))
	if code, out := n.run("--once"); code != 2 || !strings.Contains(out, "--token-file") || !strings.Contains(out, "swapped") {
		t.Fatalf("a CA in the token file: exit %d\n%s", code, out)
	}

	seed := newNode(t, "calico-config-v2.6-etcd.yaml")
	seed.editConfigMap(`etcd_endpoints: "http://127.0.0.1:2379"`, `etcd_endpoints: "http://<ETCD_IP>:<ETCD_PORT>"`)
	code, rep := seed.drift()
	if code != 2 || len(rep.Files) == 0 || !strings.HasSuffix(rep.Files[0].Path, "/10-calico.conf") || rep.Files[0].State != "Error" {
		t.Fatalf("an Error on a v2.6 template: exit %d, files %+v", code, rep.Files)
	}
}

// cniPluginToken is a made-up token for kube-system/calico-cni-plugin.
const cniPluginToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLWNuaS1wbHVnaW4iLCJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJlRA"

// TestOfflineRepairFromAManifest: the README's offline repair: a manifest
// as `kubectl get daemonset/calico-node configmap/calico-config -o yaml`
// prints it (no ServiceAccounts in it), a token for the CNI account, a CA.
// The account comes from the token; the policy is guard.
func TestOfflineRepairFromAManifest(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	manifest := offlineManifest(n)
	if code, out := n.run("--once", "--manifest-file", manifest, "--configmap-file", ""); code != 0 {
		t.Fatalf("offline repair from a manifest: exit %d\n%s", code, out)
	}
	code, out := n.run("drift", "-o", "json", "--manifest-file", manifest, "--configmap-file", "")
	for _, want := range []string{`"kind": "daemonset"`, `"daemonset": "kube-system/calico-node"`, `"serviceAccount": "kube-system/calico-cni-plugin"`, `"policy": "guard"`} {
		if !strings.Contains(out, want) {
			t.Errorf("drift lacks %s:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("drift after the repair: exit %d\n%s", code, out)
	}
}

// offlineManifest writes, for n, the manifest `kubectl get ds/calico-node
// cm/calico-config -o yaml` would print from the v3.32 fixture (with the
// DaemonSet's CNI hostPath set to n's directory, as it is the node's on a
// node), with extra documents appended, and a token for the CNI account.
func offlineManifest(n *node, extra ...string) string {
	n.t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures(n.t), "installs", "manifest-v3.32.yaml"))
	must(n.t, err)
	var keep []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.Contains(doc, "\nkind: DaemonSet") || strings.Contains(doc, "\nkind: ConfigMap") {
			keep = append(keep, strings.ReplaceAll(doc, "path: /etc/cni/net.d", "path: "+n.net))
		}
	}
	if len(keep) != 2 {
		n.t.Fatalf("the fixture gave %d documents, want the DaemonSet and the ConfigMap", len(keep))
	}
	manifest := filepath.Join(n.dir, "calico.yaml")
	must(n.t, os.WriteFile(manifest, []byte(strings.Join(append(keep, extra...), "\n---\n")), 0o600))
	must(n.t, os.WriteFile(n.tok, []byte(cniPluginToken), 0o600))
	return manifest
}
