package cniconf

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// RedactedToken is how a token is shown anywhere outside the files it
// belongs in: a short hash, enough to tell two tokens apart.
func RedactedToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "<token sha256:" + hex.EncodeToString(sum[:4]) + ">"
}

// jwtPattern matches a JSON Web Token, so tokens the process never learned
// (in a file it reads, in an error from the API) are hidden too.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+`)

// Redact hides the given tokens and anything shaped like a JWT.
func Redact(s string, tokens ...string) string {
	for _, t := range tokens {
		if len(t) >= 8 {
			s = strings.ReplaceAll(s, t, RedactedToken(t))
		}
	}
	return jwtPattern.ReplaceAllStringFunc(s, RedactedToken)
}

// UnifiedDiff is a diff from the file on disk to the desired file, tokens
// redacted on both sides.
func UnifiedDiff(onDisk, desired []byte, tokens ...string) string {
	a, b := Redact(string(onDisk), tokens...), Redact(string(desired), tokens...)
	if a == b {
		return ""
	}
	out, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b),
		FromFile: "on disk", ToFile: "desired", Context: 3,
	})
	if err != nil {
		return ""
	}
	return out
}
