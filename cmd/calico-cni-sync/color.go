package main

import (
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// ANSI colours of a unified diff, as git shows one.
const (
	colorReset  = "\x1b[0m"
	colorRemove = "\x1b[31m"
	colorAdd    = "\x1b[32m"
	colorHunk   = "\x1b[36m"
	colorHeader = "\x1b[1m"
)

// wantsColor reports whether w is a terminal that colour may be written to:
// never into a pipe or a file, nor with NO_COLOR set (no-color.org).
func wantsColor(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// colorDiff colours a unified diff's lines for a terminal.
func colorDiff(diff string) string {
	lines := strings.SplitAfter(diff, "\n")
	var b strings.Builder
	for _, l := range lines {
		color := ""
		switch {
		case strings.HasPrefix(l, "--- "), strings.HasPrefix(l, "+++ "):
			color = colorHeader
		case strings.HasPrefix(l, "@@"):
			color = colorHunk
		case strings.HasPrefix(l, "-"):
			color = colorRemove
		case strings.HasPrefix(l, "+"):
			color = colorAdd
		}
		if color == "" || l == "" {
			b.WriteString(l)
			continue
		}
		body, nl := strings.CutSuffix(l, "\n")
		b.WriteString(color + body + colorReset)
		if nl {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// printDiff writes a diff, coloured on a terminal.
func printDiff(w io.Writer, diff string) {
	if wantsColor(w) {
		diff = colorDiff(diff)
	}
	_, _ = io.WriteString(w, diff)
}
