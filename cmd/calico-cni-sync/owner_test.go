package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTokenFileOfAnotherUserIsClosed: a token-bearing file owned by another
// user and readable by everyone, under the agent as the DaemonSet runs it
// (uid 0 with every capability dropped, so no CAP_FOWNER or CAP_CHOWN), is
// closed by one --once: mode 0600, owned by the agent, its bytes as they
// were (a kept edit's included). The message says what was done.
func TestTokenFileOfAnotherUserIsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns a file to another user: run it as root (CI does)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv (util-linux) runs the command without capabilities, as the DaemonSet does: ", err)
	}
	noCaps := []string{"--bounding-set=-all", "--inh-caps=-all", "--"}
	status, err := exec.Command(setpriv, append(noCaps, "grep", "^CapEff:", "/proc/self/status")...).Output()
	if err != nil || !strings.Contains(string(status), "0000000000000000") {
		t.Fatalf("setpriv does not drop the capabilities: %v %s", err, status)
	}
	bin := binary(t)
	cases := []struct {
		name, fixture, file string
		args                []string
		// edit makes the file a hand edit, kept under --on-drift=report
		// (exit 1: the edit is still there).
		edit [2]string
		code int
	}{
		{name: "kubeconfig in sync", fixture: "calico-config-v3.32.yaml", file: "calico-kubeconfig"},
		{name: "token in the conf (v2.6)", fixture: "calico-config-v2.6-kubeadm.yaml", file: "10-calico.conf"},
		{name: "kept edit", fixture: "calico-config-v3.32.yaml", file: "calico-kubeconfig", args: []string{"--on-drift", "report"},
			edit: [2]string{"    server:", "    tls-server-name: edited\n    server:"}, code: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.fixture)
			n.once()
			if tc.edit[0] != "" {
				n.edit(tc.file, tc.edit[0], tc.edit[1])
			}
			path := filepath.Join(n.net, tc.file)
			must(t, os.Chmod(path, 0o644))
			must(t, os.Chown(path, 1000, 1000))
			before := n.read(tc.file)

			cmd := exec.Command(setpriv, append(append(noCaps, bin), n.argv(append([]string{"--once"}, tc.args...)...)...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != tc.code {
				t.Fatalf("--once without capabilities: %v, want exit %d\n%s", err, tc.code, out.String())
			}
			fi, err := os.Lstat(path)
			must(t, err)
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
				t.Fatalf("after --once: mode %s, owner %d:%d; want 0600 and 0:0\n%s", fi.Mode().Perm(), st.Uid, st.Gid, out.String())
			}
			if got := n.read(tc.file); got != before {
				t.Fatalf("closing the file changed its content:\n%s\nwant\n%s", got, before)
			}
			if !strings.Contains(out.String(), "lets others read the token; replaced by a copy the agent owns, mode 0600") {
				t.Errorf("the output does not say what was done:\n%s", out.String())
			}
			for _, tok := range []string{tokenA, "c2lnbmF0dXJl"} {
				if strings.Contains(out.String(), tok) {
					t.Fatal("the output shows a token")
				}
			}
		})
	}
}
