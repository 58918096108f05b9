package token

import (
	"testing"
)

func TestParseClaims(t *testing.T) {
	// {"sub":"system:serviceaccount:kube-system:calico-node","exp":4102444800}
	c := ParseClaims("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06Y2FsaWNvLW5vZGUiLCJleHAiOjQxMDI0NDQ4MDB9.c2ln")
	if c.Subject != "system:serviceaccount:kube-system:calico-node" || c.ExpiresAt == nil || c.ExpiresAt.Year() != 2100 {
		t.Fatalf("claims %+v", c)
	}
	if c := ParseClaims("opaque-token"); c.Subject != "" || c.ExpiresAt != nil {
		t.Fatalf("opaque token gave claims %+v", c)
	}
}

// fakeTokens answers TokenRequests with numbered tokens, or fails.
