package token

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + "." + enc([]byte("sig"))
}

func TestHealth(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	sub := "system:serviceaccount:kube-system:calico-cni-plugin"
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	rejected := jwt(t, map[string]any{"sub": sub, "iat": at(-time.Hour), "exp": at(23 * time.Hour)})
	cases := []struct {
		name, token, why string
	}{
		{name: "healthy", token: jwt(t, map[string]any{"sub": sub, "iat": at(-time.Hour), "exp": at(23 * time.Hour)})},
		{name: "no expiry (legacy Secret token)", token: jwt(t, map[string]any{"sub": sub})},
		{name: "not a JWT", token: "abc.def", why: "unreadable"},
		{name: "another account", token: jwt(t, map[string]any{"sub": "system:serviceaccount:kube-system:calico-node"}), why: "another account"},
		{name: "expired", token: jwt(t, map[string]any{"sub": sub, "iat": at(-25 * time.Hour), "exp": at(-time.Hour)}), why: "expired"},
		{name: "under 10% left", token: jwt(t, map[string]any{"sub": sub, "iat": at(-22 * time.Hour), "exp": at(2 * time.Hour)}), why: "10% of its lifetime"},
		{name: "under 5 minutes left", token: jwt(t, map[string]any{"sub": sub, "iat": at(-time.Minute), "exp": at(4 * time.Minute)}), why: "less than 5m0s left"},
		{name: "rejected", token: rejected + "x", why: "rejected by the API server"},
	}
	h := Health{Subject: sub, Now: func() time.Time { return now },
		Verdict: func(tok string) *bool {
			if strings.HasSuffix(tok, "x") {
				return ptr(false)
			}
			return nil
		}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := h.Judge(tc.token)
			if ok != (tc.why == "") || !strings.Contains(why, tc.why) {
				t.Fatalf("Judge: %v %q, want healthy=%v with %q", ok, why, tc.why == "", tc.why)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
