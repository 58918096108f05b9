package cniconf

import (
	"strings"
	"testing"
)

// TestRedactTokenFields: a token that is not a JWT, in a file that does not
// parse, is still hidden, in both files' layouts; redacted values and other
// fields stay as they are.
func TestRedactTokenFields(t *testing.T) {
	const secret = "hunter2-not-a-jwt"
	tests := []struct{ name, in, keep string }{
		{"corrupt conf", `{"type": "calico", "policy": {"type": "k8s", "k8s_auth_token": "` + secret + `", "k8s_api_root": "https://10.0.0.1:443"`, `"k8s_api_root": "https://10.0.0.1:443"`},
		{"conf with an escaped quote", `{"k8s_auth_token": "` + secret + `\"x"}`, `{"k8s_auth_token": "<token sha256:`},
		{"kubeconfig", "users:\n- name: calico\n  user:\n    token: " + secret + "\ncontexts:\n", "contexts:"},
		{"kubeconfig, quoted", "users:\n- name: calico\n  user:\n    token: \"" + secret + "\"\n", "user:"},
		{"kubeconfig, flow list item", "users:\n  - token: " + secret + "\n", "users:"},
		{"corrupt kubeconfig", "users:\n- user:\n    token: " + secret + "\n  {{{ not yaml", "not yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in)
			if strings.Contains(got, "hunter2") {
				t.Errorf("the token is shown: %s", got)
			}
			if !strings.Contains(got, tc.keep) || !strings.Contains(got, RedactedToken(secret)[:14]) {
				t.Errorf("redacted to %q, want %q kept and the token's digest", got, tc.keep)
			}
			if again := Redact(got); again != got {
				t.Errorf("redacting twice changed it: %q", again)
			}
		})
	}
	for _, prose := range []string{
		`"tokenFile: x", "cniVersion": "1.0.0"`,
		"token: policy guard, managed by calico-node, source tokenrequest\n",
	} {
		if got := Redact(prose); got != prose {
			t.Errorf("redacted what holds no token: %q", got)
		}
	}
}
