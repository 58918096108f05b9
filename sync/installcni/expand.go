package installcni

import (
	"strings"
	"unicode/utf8"
)

// expandVars expands $(NAME) references in s exactly as the kubelet expands
// an env var's value (k8s.io/kubernetes third_party/forked/golang/expansion,
// which lives in no importable module): $$ is a literal $, a reference lookup
// does not know is left as written, and an unclosed "$(" is kept literally.
// The kubelet's quirk is kept too: a $ followed by an invalid UTF-8 byte
// yields "$" and U+FFFD.
func expandVars(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(s); cursor++ {
		if s[cursor] != '$' || cursor+1 >= len(s) {
			continue
		}
		b.WriteString(s[checkpoint:cursor])
		read, isRef, advance := readReference(s[cursor+1:])
		if isRef {
			if v, ok := lookup(read); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + read + ")")
			}
		} else {
			b.WriteString(read)
		}
		cursor += advance
		checkpoint = cursor + 1
	}
	return b.String() + s[checkpoint:]
}

// readReference reads what follows a $: the text to emit (or the name
// referenced, when isRef), and how many bytes were consumed.
func readReference(s string) (read string, isRef bool, advance int) {
	r, size := utf8.DecodeRuneInString(s)
	switch r {
	case '$':
		return s[:size], false, size
	case '(':
		if end := strings.IndexByte(s[1:], ')'); end >= 0 {
			return s[1 : end+1], true, end + 2
		}
		return "$(", false, 1
	default:
		return "$" + string(r), false, size
	}
}
