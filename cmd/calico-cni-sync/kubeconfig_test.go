package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeconfigFor writes a kubeconfig whose cluster is server.
func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "`+server+`"}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`), 0o600))
	return p
}

// notInCluster makes client-go's in-cluster source impossible.
func notInCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

// TestKubeconfigLoadingRules: kubectl's order, --kubeconfig before
// $KUBECONFIG (a list, missing files skipped), and when nothing is found,
// every source tried is named.
func TestKubeconfigLoadingRules(t *testing.T) {
	flagFile := kubeconfigFor(t, "https://flag.example:6443")
	envFile := kubeconfigFor(t, "https://env.example:6443")
	absent := filepath.Join(t.TempDir(), "absent")
	tests := []struct {
		name, flag, env string
		wantHost        string
		wantErr         []string
	}{
		{name: "--kubeconfig first", flag: flagFile, env: envFile, wantHost: "https://flag.example:6443"},
		{name: "$KUBECONFIG", env: envFile, wantHost: "https://env.example:6443"},
		{name: "$KUBECONFIG list, missing file skipped", env: absent + string(os.PathListSeparator) + envFile, wantHost: "https://env.example:6443"},
		{name: "nothing", env: absent, wantErr: []string{"--kubeconfig (not given)", "$KUBECONFIG file " + absent + " (no such file)", "in-cluster (KUBERNETES_SERVICE_HOST"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			notInCluster(t)
			t.Setenv("KUBECONFIG", tc.env)
			cfg, err := restConfig(&Options{Kubeconfig: tc.flag})
			if tc.wantErr != nil {
				if !errors.Is(err, errNoKubeconfig) {
					t.Fatalf("err %v, want errNoKubeconfig", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, err)
					}
				}
				return
			}
			if err != nil || cfg.Host != tc.wantHost {
				t.Fatalf("got %v, %v; want host %s", cfg, err, tc.wantHost)
			}
		})
	}
}

// TestWrongKubeconfigFile: a file that is not a kubeconfig is named in one
// short line, without the decoder's Go types.
func TestWrongKubeconfigFile(t *testing.T) {
	d := t.TempDir()
	files := map[string]string{
		"token":     tokenA,
		"ca.crt":    string(selfSignedCA(t)),
		"cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: calico-config}\n",
		"type.yaml": "apiVersion: v1\nkind: Config\nclusters: 5\n",
	}
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(d, name), []byte(content), 0o600))
	}
	tests := []struct{ file, want string }{
		{"token", "is not a kubeconfig: not a YAML or JSON object"},
		{"ca.crt", "is not a kubeconfig: not a YAML or JSON object"},
		{"cm.yaml", "is not a kubeconfig: its kind is ConfigMap"},
		{"type.yaml", `is not a kubeconfig: field "clusters" has the wrong type`},
		{"absent", "no such file or directory"},
		{".", "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(d, tc.file)
			for _, cmd := range [][]string{{"drift"}, {"--once"}, {"report"}} {
				code, out, errOut := runArgs(append(cmd, "--kubeconfig", path)...)
				if code != 2 || out != "" {
					t.Errorf("%v: exit %d, stdout %q", cmd, code, out)
				}
				if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--kubeconfig "+path) || !strings.Contains(errOut, tc.want) {
					t.Errorf("%v: want one line naming --kubeconfig %s and %q, got %q", cmd, path, tc.want, errOut)
				}
				for _, goType := range []string{"Go value", "Go struct", "struct {", "v1.", "c2lnbmF0dXJl"} {
					if strings.Contains(errOut, goType) {
						t.Errorf("%v: error shows %q: %q", cmd, goType, errOut)
					}
				}
			}
		})
	}
}

// TestAgentWithoutKubeconfig: the agent says where it looked, not that it
// cannot reach an API server it never found.
func TestAgentWithoutKubeconfig(t *testing.T) {
	noKubeconfig(t)
	notInCluster(t)
	code, _, errOut := runArgs("--state-dir", t.TempDir(), "--backup-dir", t.TempDir())
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, w := range []string{"--kubeconfig (not given)", "$KUBECONFIG", "in-cluster"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q: %s", w, errOut)
		}
	}
	if strings.Contains(errOut, "cannot reach") {
		t.Errorf("stderr: %s", errOut)
	}
}

// TestPartialOfflineInputs: some offline inputs and no kubeconfig: the
// error names the offline input that is missing. With a kubeconfig, online
// use is meant and tried.
func TestPartialOfflineInputs(t *testing.T) {
	n := newNode(t, "calico-config-v3.32.yaml")
	tmpl := filepath.Join(n.dir, "template.json")
	must(t, os.WriteFile(tmpl, []byte(`{"name": "k8s-pod-network", "cniVersion": "0.3.1", "type": "calico"}`), 0o644))
	dirs := []string{"--cni-net-dir", n.net, "--state-dir", filepath.Join(n.dir, "state"), "--backup-dir", n.bak, "--node-name", "node-1", "--ca-file", n.ca}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--configmap-file", n.cm}, "--configmap-file is given but not --token-file"},
		{[]string{"--cni-network-config-file", tmpl}, "--cni-network-config-file is given but not --token-file"},
		{[]string{"--token-file", n.tok}, "--token-file is given but neither --manifest-file, --configmap-file nor --cni-network-config-file"},
	}
	for _, tc := range tests {
		for _, cmd := range []string{"--once", "drift", "render"} {
			t.Run(cmd+" "+tc.args[0], func(t *testing.T) {
				noKubeconfig(t)
				code, _, errOut := runArgs(append(append([]string{cmd}, tc.args...), dirs...)...)
				if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "no kubeconfig: tried") {
					t.Errorf("exit %d, want 2 and %q: %s", code, tc.want, errOut)
				}
				if strings.Contains(errOut, "/var/run/secrets") && !strings.Contains(errOut, "in-cluster") {
					t.Errorf("stderr: %s", errOut)
				}
				t.Setenv("KUBECONFIG", kubeconfigFor(t, "https://127.0.0.1:1"))
				if code, _, errOut := runArgs(append(append([]string{cmd}, tc.args...), dirs...)...); code != 2 || strings.Contains(errOut, "offline") {
					t.Errorf("with a kubeconfig: exit %d, want 2 from the unreachable API server: %s", code, errOut)
				}
			})
		}
	}
	if e, _ := os.ReadDir(n.net); len(e) != 0 {
		t.Errorf("%d files written", len(e))
	}
}
