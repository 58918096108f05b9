package token

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Token sources (--token-source).
const (
	SourceAuto         = "auto"
	SourceSecret       = "secret"
	SourceTokenRequest = "tokenrequest"
	SourceFile         = "file"
)

// Token is the service-account token and where it came from.
type Token struct {
	Value string
	// Source is secret, tokenrequest or file.
	Source string
	// Secret names the Secret it came from (secret source).
	Secret string
	// File is the path it came from (file source).
	File string
	// CA is the Secret's ca.crt, when it has one.
	CA []byte
}

// Claims are what a JWT says about itself, read without verifying it: the
// product only shows them, it never trusts them.
type Claims struct {
	Subject   string
	ExpiresAt *time.Time
}

// jwtClaims are the claims of a service-account token the agent reads.
type jwtClaims struct {
	Sub string   `json:"sub"`
	Exp *float64 `json:"exp"`
	Iat *float64 `json:"iat"`
}

// parseJWT reads a JWT's claims without verifying it.
func parseJWT(token string) (jwtClaims, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return jwtClaims{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return jwtClaims{}, false
	}
	var c jwtClaims
	if json.Unmarshal(payload, &c) != nil {
		return jwtClaims{}, false
	}
	return c, true
}

// ParseClaims reads the subject and expiry of a JWT; a token that is not a
// JWT gives empty claims.
func ParseClaims(token string) Claims {
	c, ok := parseJWT(token)
	if !ok {
		return Claims{}
	}
	out := Claims{Subject: c.Sub}
	if c.Exp != nil {
		t := time.Unix(int64(*c.Exp), 0).UTC()
		out.ExpiresAt = &t
	}
	return out
}

// Info is the token section of a drift report: never the token itself.
type Info struct {
	Source         string     `json:"source"`
	Secret         string     `json:"secret"`
	Policy         string     `json:"policy"`
	ServiceAccount string     `json:"serviceAccount"`
	ManagedBy      string     `json:"managedBy"`
	Subject        *string    `json:"subject"`
	ExpiresAt      *time.Time `json:"expiresAt"`
	Accepted       *bool      `json:"accepted"`
	// Verdict is the credential verdict on the token on disk: what
	// Calico's plugin gets from the API server with the credential that
	// holds it (ok, expired, rejected, forbidden, untrusted); absent when
	// it was not probed.
	Verdict string `json:"verdict,omitempty"`
	// VerdictMessage says why, for the condition and the events.
	VerdictMessage string `json:"-"`
}

// Account is a service account.
type Account struct{ Namespace, Name string }

// Subject is the user name the API server gives the account's tokens.
func (a Account) Subject() string {
	return "system:serviceaccount:" + a.Namespace + ":" + a.Name
}

// AccountOf reads a service-account subject; def when it is not one.
func AccountOf(subject string, def Account) Account {
	parts := strings.Split(subject, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return def
	}
	return Account{Namespace: parts[2], Name: parts[3]}
}

// Info describes a token for reports.
func (t Token) Info() Info {
	info := Info{Source: t.Source, Secret: t.Secret}
	c := ParseClaims(t.Value)
	if c.Subject != "" {
		info.Subject = &c.Subject
	}
	info.ExpiresAt = c.ExpiresAt
	return info
}

// Origin names where a token came from, for errors.
func (t Token) Origin() string {
	switch {
	case t.File != "":
		return "--token-file " + t.File
	case t.Secret != "":
		return "Secret " + t.Secret
	default:
		return t.Source
	}
}

// Legacy reports whether a token is a Secret's service-account token: a JWT
// with no expiry. Bound tokens are checked against signing keys, not a
// cache, and are never asked twice.
func Legacy(token string) bool {
	c, ok := parseJWT(token)
	return ok && c.Exp == nil
}
