package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func kubeconfig(server string, ca []byte, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: u
  user:
    token: %s
contexts:
- name: c
  context:
    cluster: local
    user: u
current-context: c
`, server, base64.StdEncoding.EncodeToString(ca), token)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDiscover: every credential the directory's configs point to is found,
// with its plugin and the request that plugin makes first, through the
// host's paths.
func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	const host = "/etc/cni/net.d"
	write(t, filepath.Join(dir, "00-multus.conf"), `{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus",
		"kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig",
		"delegates":[{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[
			{"type":"calico","kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"},"ipam":{"type":"calico-ipam"}}]}]}`)
	write(t, filepath.Join(dir, "10-calico.conflist"), `{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[
		{"type":"calico","kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"},"ipam":{"type":"calico-ipam"}},
		{"type":"istio-cni","kubernetes":{"kubeconfig":"/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"}},
		{"type":"linkerd-cni","kubernetes":{"kubeconfig":"/etc/cni/net.d/ZZZ-linkerd-cni-kubeconfig"}},
		{"type":"bridge","ipam":{"type":"whereabouts","kubernetes":{"kubeconfig":"/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"}}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`)
	write(t, filepath.Join(dir, "whereabouts.d", "whereabouts.conf"), `{"datastore":"kubernetes","kubernetes":{"kubeconfig":"/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"}}`)
	write(t, filepath.Join(dir, "99-broken.conf"), `{not json`)
	write(t, filepath.Join(dir, "README"), `{"type":"multus","kubeconfig":"/nowhere"}`)

	targets, err := Dir{Path: dir, HostPath: host}.Discover()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		got = append(got, fmt.Sprintf("%s %s %s", tg.Plugin, tg.Path, describe(tg.Request)))
	}
	want := []string{
		"calico /etc/cni/net.d/calico-kubeconfig GET /apis/crd.projectcalico.org/v1/clusterinformations/default",
		"istio-cni /etc/cni/net.d/ZZZ-istio-cni-kubeconfig GET /api/v1/namespaces/default/pods/calico-cni-sync-probe",
		"linkerd-cni /etc/cni/net.d/ZZZ-linkerd-cni-kubeconfig GET /api/v1/namespaces/default/pods/calico-cni-sync-probe",
		"multus /etc/cni/net.d/multus.d/multus.kubeconfig GET /api/v1/namespaces/default/pods/calico-cni-sync-probe",
		"whereabouts /etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig review get ippools.whereabouts.cni.cncf.io,update ippools.whereabouts.cni.cncf.io,create overlappingrangeipreservations.whereabouts.cni.cncf.io,create leases.coordination.k8s.io",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("targets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func describe(r Request) string {
	if r.Resource != "" {
		return "GET " + r.path()
	}
	var needs []string
	for _, a := range r.Needs {
		needs = append(needs, a.String())
	}
	return "review " + strings.Join(needs, ",")
}

// TestProbeAllReadsNeverWrites: each credential is judged from its own file
// through the host path mapping, and no file of the directory changes.
func TestProbeAllReadsNeverWrites(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+validToken(now) {
			status(401, "Unauthorized", "", "")(w, r)
			return
		}
		status(404, "NotFound", "pods", "")(w, r)
	})
	stale := jwt(map[string]any{"sub": "system:serviceaccount:kube-system:multus", "exp": now.Add(time.Hour).Unix()})
	files := map[string]string{
		"00-multus.conf":                 `{"cniVersion":"0.3.1","name":"multus","type":"multus","kubeconfig":"/host/net.d/multus.d/multus.kubeconfig","delegates":[]}`,
		"multus.d/multus.kubeconfig":     kubeconfig(s.URL, s.ca(), stale),
		"10-calico.conflist":             `{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"calico","kubernetes":{"kubeconfig":"/host/net.d/calico-kubeconfig"}},{"type":"linkerd-cni","kubernetes":{"kubeconfig":"/host/net.d/ZZZ-linkerd-cni-kubeconfig"}}]}`,
		"calico-kubeconfig":              kubeconfig(s.URL, s.ca(), validToken(now)),
		"whereabouts.d/whereabouts.conf": `{"kubernetes":{"kubeconfig":"/host/net.d/whereabouts.d/whereabouts.kubeconfig"}}`,
	}
	for name, content := range files {
		write(t, filepath.Join(dir, name), content)
	}
	before := snapshot(t, dir)

	results, err := Dir{Path: dir, HostPath: "/host/net.d"}.ProbeAll(context.Background(), Prober{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		got = append(got, fmt.Sprintf("%s %s %s", r.Plugin, r.Path, r.Verdict))
		if strings.Contains(r.Message, stale) || strings.Contains(r.Message, validToken(now)) {
			t.Errorf("%s: message holds a token: %s", r.Path, r.Message)
		}
	}
	want := "calico /host/net.d/calico-kubeconfig ok\n" +
		"linkerd-cni /host/net.d/ZZZ-linkerd-cni-kubeconfig \n" +
		"multus /host/net.d/multus.d/multus.kubeconfig rejected\n" +
		"whereabouts /host/net.d/whereabouts.d/whereabouts.kubeconfig "
	if strings.Join(got, "\n") != want {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	if !strings.Contains(results[1].Message, "does not exist") {
		t.Errorf("a missing kubeconfig's message: %q", results[1].Message)
	}
	if after := snapshot(t, dir); after != before {
		t.Errorf("the directory changed:\n%s\nwas:\n%s", after, before)
	}
}

// snapshot is every file's name, mode, time and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		fmt.Fprintf(&b, "%s %s %s %q\n", path, fi.Mode(), fi.ModTime().Format(time.RFC3339Nano), data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestReadRefusesOddFiles: a FIFO where a kubeconfig was expected is not
// waited on.
func TestReadRefusesOddFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "calico-kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Dir{Path: dir}.read(filepath.Join(dir, "calico-kubeconfig"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("read a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read blocked on a FIFO")
	}
}

func TestFromCalicoEntry(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\n")
	kc := kubeconfig("https://10.96.0.1:443", ca, "kubeconfig-token")
	read := func(files map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, fmt.Errorf("read %s: %w", p, os.ErrNotExist)
		}
	}
	mapPath := func(p string) string { return "/host" + p }
	for _, tc := range []struct {
		name  string
		entry string
		files map[string]string
		want  Credential
		err   string
	}{
		{"v3: the kubeconfig", `{"type":"calico","kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}`,
			map[string]string{"/etc/cni/net.d/calico-kubeconfig": kc},
			Credential{Server: "https://10.96.0.1:443", CAData: ca, Token: "kubeconfig-token"}, ""},
		{"v2.x: the conf's root and token over the kubeconfig's", `{"type":"calico","policy":{"type":"k8s","k8s_api_root":"https://10.0.0.1:6443/api/v1/","k8s_auth_token":"conf-token"},"kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}`,
			map[string]string{"/etc/cni/net.d/calico-kubeconfig": kc},
			Credential{Server: "https://10.0.0.1:6443", CAData: ca, Token: "conf-token"}, ""},
		{"v2.x: a CA file replaces the kubeconfig's CA", `{"type":"calico","policy":{"k8s_api_root":"https://10.0.0.1:6443","k8s_auth_token":"t","k8s_certificate_authority":"/etc/ca.pem","k8s_client_certificate":"/etc/c.pem","k8s_client_key":"/etc/k.pem"},"kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}`,
			map[string]string{"/etc/cni/net.d/calico-kubeconfig": kc},
			Credential{Server: "https://10.0.0.1:6443", CAFile: "/host/etc/ca.pem", CertFile: "/host/etc/c.pem", KeyFile: "/host/etc/k.pem", Token: "t"}, ""},
		{"v2.x without its kubeconfig", `{"type":"calico","policy":{"k8s_api_root":"https://10.0.0.1:6443","k8s_auth_token":"t"},"kubernetes":{"kubeconfig":"/etc/cni/net.d/gone"}}`,
			nil, Credential{Server: "https://10.0.0.1:6443", Token: "t"}, ""},
		{"kubernetes.k8s_api_root wins", `{"type":"calico","kubernetes":{"kubeconfig":"/k","k8s_api_root":"https://api:6443"}}`,
			map[string]string{"/k": kc}, Credential{Server: "https://api:6443", CAData: ca, Token: "kubeconfig-token"}, ""},
		{"v3 without its kubeconfig", `{"type":"calico","kubernetes":{"kubeconfig":"/etc/cni/net.d/gone"}}`, nil, Credential{}, "does not exist"},
		{"no server at all", `{"type":"calico"}`, nil, Credential{}, "no API server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromCalicoEntry([]byte(tc.entry), read(tc.files), mapPath)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) && !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestDiscoverCalicoV2: a v2.x conf holds its own token; the credential's
// path is the conf, and the request its policy driver made first.
func TestDiscoverCalicoV2(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "10-calico.conf"), `{"name":"k8s-pod-network","cniVersion":"0.1.0","type":"calico",
		"policy":{"type":"k8s","k8s_api_root":"https://10.96.0.1:443","k8s_auth_token":"conf-token"},
		"kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}`)
	targets, err := Dir{Path: dir, HostPath: "/etc/cni/net.d", PodNamespace: "kube-system", PodName: "agent-x"}.Discover()
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 {
		t.Fatalf("%d targets, want 1", len(targets))
	}
	tg := targets[0]
	if got := fmt.Sprintf("%s %s %s", tg.Plugin, tg.Path, describe(tg.Request)); got != "calico /etc/cni/net.d/10-calico.conf GET /api/v1/namespaces/kube-system/pods/agent-x" {
		t.Errorf("target %s", got)
	}
	cred, err := tg.Credential()
	if err != nil {
		t.Fatal(err)
	}
	if cred.Server != "https://10.96.0.1:443" || cred.Token != "conf-token" {
		t.Errorf("credential server %q token %q", cred.Server, cred.Token)
	}
}
