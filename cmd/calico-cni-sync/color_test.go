package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestDiffColour: a diff is coloured line by line for a terminal, and
// never into a pipe, a buffer or with NO_COLOR.
func TestDiffColour(t *testing.T) {
	got := colorDiff("--- a (on disk)\n+++ a (desired)\n@@ -1 +1 @@\n-old\n+new\n same\n")
	for _, want := range []string{colorRemove + "-old" + colorReset + "\n", colorAdd + "+new" + colorReset + "\n", colorHunk + "@@ -1 +1 @@", " same\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("coloured diff lacks %q:\n%q", want, got)
		}
	}
	if wantsColor(&bytes.Buffer{}) {
		t.Error("colour into a buffer")
	}
	r, w, err := os.Pipe()
	must(t, err)
	defer func() { _ = r.Close(); _ = w.Close() }()
	if wantsColor(w) {
		t.Error("colour into a pipe")
	}
}
