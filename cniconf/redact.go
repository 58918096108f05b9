package cniconf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// maxDiffBytes bounds what is diffed. A CNI config is a few KiB; a file far
// larger is not one, and diffing it (quadratic at worst) would stall the loop.
const maxDiffBytes = 64 << 10

// UnifiedDiff is a diff from the file on disk to the desired file, tokens
// redacted on both sides.
func UnifiedDiff(onDisk, desired []byte, tokens ...string) string {
	if len(onDisk) > maxDiffBytes || len(desired) > maxDiffBytes {
		return fmt.Sprintf("--- on disk\n+++ desired\n(not diffed: %d bytes on disk, %d desired)\n", len(onDisk), len(desired))
	}
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
