package token

import (
	"encoding/base64"
	"testing"
)

// FuzzParseClaims: whatever a token file or Secret holds, reading its
// claims never panics, and what a JWT says is what is shown.
func FuzzParseClaims(f *testing.F) {
	payload := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	f.Add("eyJhbGciOiJSUzI1NiJ9." + payload(`{"sub":"system:serviceaccount:kube-system:calico-cni-plugin","exp":4102444800}`) + ".c2ln")
	f.Add("a." + payload(`{"sub":"x","exp":1e300,"iat":-1e300}`) + ".b")
	f.Add("a." + payload(`{"exp":"soon"}`) + "==.b")
	f.Add("plain-token-0123456789abcdef")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		raw, ok := parseJWT(tok)
		c := ParseClaims(tok)
		if !ok {
			if c.Subject != "" || c.ExpiresAt != nil {
				t.Fatalf("claims %+v from a token that is no JWT", c)
			}
			return
		}
		if c.Subject != raw.Sub || (c.ExpiresAt != nil) != (raw.Exp != nil) {
			t.Fatalf("claims %+v, the JWT says %+v", c, raw)
		}
		_ = AccountOf(c.Subject, Account{})
		_ = Token{Value: tok}.Info()
	})
}
