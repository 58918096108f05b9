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

// tokenFields match the values of the fields that hold a token in the files
// the agent manages, whatever the value looks like and whether or not the
// file around them parses: a conf's "k8s_auth_token" and a kubeconfig's
// token (legacy tokens and hand-written ones need not be JWTs, and a corrupt
// file gives no parse to find them by).
var tokenFields = []*regexp.Regexp{
	regexp.MustCompile(`("k8s_auth_token"\s*:\s*")((?:[^"\\]|\\.)+)`),
	// The value alone on its line, as a kubeconfig writes it: a report's
	// "token: policy guard, ..." line is prose, not a token.
	regexp.MustCompile(`(?m)(^[ \t]*(?:-[ \t]+)?token:[ \t]*"?)([^"\s]+)("?[ \t]*$)`),
}

// Redact hides the given tokens, the values of token fields, and anything
// shaped like a JWT.
func Redact(s string, tokens ...string) string {
	for _, t := range tokens {
		if len(t) >= 8 {
			s = strings.ReplaceAll(s, t, RedactedToken(t))
		}
	}
	s = jwtPattern.ReplaceAllStringFunc(s, RedactedToken)
	for _, re := range tokenFields {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if strings.HasPrefix(sub[2], "<token") { // already redacted
				return m
			}
			return sub[1] + RedactedToken(sub[2]) + strings.Join(sub[3:], "")
		})
	}
	return s
}

// maxDiffBytes bounds what is diffed. A CNI config is a few KiB; a file far
// larger is not one, and diffing it (quadratic at worst) would stall the loop.
const maxDiffBytes = 64 << 10

// UnifiedDiff is a diff from the file on disk to the desired file, tokens
// redacted on both sides.
func UnifiedDiff(onDisk, desired []byte, tokens ...string) string {
	return diff("on disk", "desired", onDisk, desired, tokens)
}

// FileDiff is UnifiedDiff for a file at path, named in the headers as diff
// -u names files, with /dev/null for a file that does not exist. A
// kubeconfig's CA is shown as a digest: 1.6 kB of base64 tells a reader
// nothing but whether it changed.
func FileDiff(path string, onDisk []byte, exists bool, desired []byte, tokens ...string) string {
	from := path + " (on disk)"
	if !exists {
		from = "/dev/null"
	}
	return diff(from, path+" (desired)", redactCA(onDisk), redactCA(desired), tokens)
}

func diff(from, to string, onDisk, desired []byte, tokens []string) string {
	if len(onDisk) > maxDiffBytes || len(desired) > maxDiffBytes {
		return fmt.Sprintf("--- %s\n+++ %s\n(not diffed: %d bytes on disk, %d desired)\n", from, to, len(onDisk), len(desired))
	}
	a, b := Redact(string(onDisk), tokens...), Redact(string(desired), tokens...)
	if a == b {
		return ""
	}
	out, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: lines(a), B: lines(b),
		FromFile: from, ToFile: to, Context: 3,
	})
	if err != nil {
		return ""
	}
	return out
}

// caData matches a kubeconfig's certificate-authority-data value, quoted
// (calico-node's layout) or not (install-cni's).
var caData = regexp.MustCompile(`(certificate-authority-data:[ \t]*)"?([A-Za-z0-9+/=]{16,})"?`)

func redactCA(b []byte) []byte {
	return caData.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := caData.FindSubmatch(m)
		sum := sha256.Sum256(sub[2])
		return []byte(string(sub[1]) + "<CA sha256:" + hex.EncodeToString(sum[:4]) + ">")
	})
}

// lines splits text for the diff; an empty file has no lines (not one
// empty line).
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return difflib.SplitLines(s)
}
