package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// usageError is a mistake on the command line, as opposed to a failure of
// the command: it is printed with a hint to the command's --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// printError prints err once, one "error: " line per problem, tokens
// redacted. A usage error ends with where to read the usage.
func printError(w io.Writer, cmd *cobra.Command, err error) {
	lines := strings.Split(cniconf.Redact(err.Error()), "\n")
	if errors.As(err, new(usageError)) && cmd != nil {
		lines[len(lines)-1] += fmt.Sprintf("; see '%s --help'", cmd.CommandPath())
	}
	for _, l := range lines {
		_, _ = fmt.Fprintln(w, "error: "+l)
	}
}

// flagError turns pflag's parse error into a usage error that says what
// was probably meant: the flag of another command, or a near miss.
func flagError(cmd *cobra.Command, err error) error {
	var notExist *pflag.NotExistError
	if !errors.As(err, &notExist) || notExist.GetSpecifiedShortnames() != "" {
		return usageError{err}
	}
	name := notExist.GetSpecifiedName()
	if owners := commandsWithFlag(cmd.Root(), name); len(owners) > 0 {
		return usageError{fmt.Errorf("--%s cannot be used with %s: it is a flag of %s", name, cmd.Name(), strings.Join(owners, ", "))}
	}
	if near := nearFlag(cmd.Flags(), name); near != "" {
		return usageError{fmt.Errorf("%w (did you mean --%s?)", err, near)}
	}
	if !cmd.HasParent() {
		if s := cmd.SuggestionsFor(name); len(s) > 0 {
			return usageError{fmt.Errorf("%w (did you mean the %s command?)", err, s[0])}
		}
	}
	return usageError{err}
}

// noArgs refuses positional arguments in one line (cobra's own message
// spans several), with the command a typo most likely meant.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 && !cmd.HasParent() {
		err = fmt.Errorf("%w (did you mean %s?)", err, s[0])
	}
	return usageError{err}
}

// commandsWithFlag names the commands that have the flag.
func commandsWithFlag(root *cobra.Command, name string) []string {
	var out []string
	for _, c := range append([]*cobra.Command{root}, root.Commands()...) {
		if c.Flags().Lookup(name) != nil {
			out = append(out, c.Name())
		}
	}
	return out
}

// nearFlag is the flag a mistyped name most likely meant: one it abbreviates
// (pflag takes no abbreviations) or one a typo or two away.
func nearFlag(fs *pflag.FlagSet, name string) string {
	best, bestDist := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := editDistance(name, f.Name)
		if len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			d = 1
		}
		if d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
