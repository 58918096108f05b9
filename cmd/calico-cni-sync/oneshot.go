package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// oneShotReconciler wires --once, drift and render: online with a client,
// or offline with none.
func oneShotReconciler(o *Options, as role) (*reconcile.Reconciler, error) {
	cfg, client, err := clientFor(o)
	if err != nil {
		return nil, err
	}
	return newReconciler(o, cfg, client, as)
}

// runOnce reconciles this node once: the repair of a broken node.
func runOnce(ctx context.Context, o *Options, stdout, stderr io.Writer) (int, error) {
	r, err := oneShotReconciler(o, role{keepFacts: !o.AcceptEnvChange})
	if err != nil {
		return exitError, err
	}
	if note := o.nodeNameNote(); note != "" {
		_, _ = fmt.Fprintln(stderr, note)
	}
	mode := reconcile.ModeSync
	if o.DryRun {
		mode = reconcile.ModeDryRun
	} else if err := errors.Join(checkNetDirParent(o.CNINetDir), checkWritableDirs(o, false)); err != nil {
		return exitError, err
	}
	rep, pass, err := r.Reconcile(ctx, mode)
	if err == nil && rep.RepairRefused != "" {
		// The token the files need could not be written: a repair failed.
		err = fmt.Errorf("the token in this node's CNI files cannot be replaced: %s", rep.RepairRefused)
	}
	if werr := statusFileIfGiven(o, rep); werr != nil {
		err = errors.Join(err, werr)
	}
	if o.Output == "json" {
		if perr := printJSON(stdout, rep); perr != nil {
			return exitError, perr
		}
	} else {
		printFiles(stdout, pass, o.DryRun, err)
	}
	if err != nil {
		return exitError, err
	}
	code := exitOK
	for _, f := range pass.Outcomes {
		if (o.DryRun && f.WouldChange) || f.Now.State == cniconf.Drifted {
			code = exitDrift
		}
	}
	return code, nil
}

// printFiles is --once's account of what it found and did. A message that
// repeats err is left out: err is printed once, on stderr.
func printFiles(w io.Writer, pass *reconcile.Pass, dryRun bool, err error) {
	for _, o := range pass.Outcomes {
		f := o.Now
		line := fmt.Sprintf("%s: %s", f.Path, f.State)
		if o.Found != "" && o.Found != f.State {
			line = fmt.Sprintf("%s: %s, now %s", f.Path, o.Found, f.State)
		}
		switch {
		case o.Action == cniconf.ActionWritten:
			line += " (written)"
		case o.Action == cniconf.ActionRotated:
			line += " (token replaced)"
		case o.Action == cniconf.ActionCARepaired:
			line += " (CA replaced)"
		case o.Action == cniconf.ActionRestored:
			line += " (hand edit backed up and restored)"
		case dryRun && o.WouldChange:
			line += " (would be written)"
		}
		if len(f.ChangedPaths) > 0 {
			line += "; changed: " + strings.Join(f.ChangedPaths, ", ")
		}
		if f.Backup != "" {
			line += "; backup: " + f.Backup
		}
		if f.Message != "" && !repeats(f.Message, err) {
			line += "; " + f.Message
		}
		_, _ = fmt.Fprintln(w, line)
		if dryRun && o.WouldChange && f.Diff != "" {
			printDiff(w, f.Diff)
		}
	}
}

// runDrift shows this node's state and writes nothing.
func runDrift(ctx context.Context, o *Options, stdout io.Writer) (int, error) {
	r, err := oneShotReconciler(o, role{checkTokens: true}) // drift reports the API server's verdict
	if err != nil {
		return exitError, err
	}
	rep, pass, err := r.Reconcile(ctx, reconcile.ModeCheck)
	if err == nil && o.Suggest {
		err = r.Suggest(rep, pass)
	}
	if werr := statusFileIfGiven(o, rep); werr != nil {
		err = errors.Join(err, werr)
	}
	if perr := printReport(stdout, rep, o.Output, err); perr != nil {
		return exitError, perr
	}
	if err != nil {
		return exitError, err
	}
	if rep.Worst() != cniconf.InSync || (rep.Token.Accepted != nil && !*rep.Token.Accepted) || rep.Token.Verdict == "forbidden" {
		return exitDrift, nil
	}
	return exitOK, nil
}

// statusFileIfGiven writes the status file for --once and drift only when
// --status-file is on the command line: its default is the agent's, which
// a repair must not overwrite.
func statusFileIfGiven(o *Options, rep *reconcile.Report) error {
	if !o.given("status-file") {
		return nil
	}
	return status.WriteStatusFile(o.StatusFile, rep)
}

// describeInputs is the report's line on where the inputs came from.
func describeInputs(s *inputs.SourceInfo) string {
	line := "inputs: " + s.Kind
	if s.DaemonSet != "" {
		line += " " + s.DaemonSet + ", container " + s.Container
		if s.Pod != "" {
			line += " of pod " + s.Pod
		} else {
			line += " of the pod template"
		}
	}
	if len(s.ConfigMaps) > 0 {
		line += ", ConfigMaps " + strings.Join(s.ConfigMaps, ", ")
	}
	if s.File != "" {
		line += ", from " + s.File
	}
	return line
}

// repeats reports whether a file's message is the error printed on its own.
func repeats(msg string, err error) bool {
	return err != nil && msg == err.Error()
}

// printJSON prints the document drift -o json, --once -o json and the status
// file share.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("print JSON: %w", err)
	}
	return nil
}

// printReport prints drift's report; a message that repeats err is left
// out of the text, as in printFiles.
func printReport(w io.Writer, rep *reconcile.Report, format string, err error) error {
	if format == "json" {
		return printJSON(w, rep)
	}
	_, _ = fmt.Fprintf(w, "node %s, checked %s\n", rep.Node, rep.CheckedAt.Format("2006-01-02T15:04:05Z"))
	if s := rep.Source; s != nil {
		_, _ = fmt.Fprintln(w, describeInputs(s))
	}
	tok := "token: policy " + rep.Token.Policy + ", managed by " + rep.Token.ManagedBy
	if rep.Token.ServiceAccount != "" {
		tok += ", service account " + rep.Token.ServiceAccount
	}
	tok += ", source " + rep.Token.Source
	if rep.Token.Secret != "" {
		tok += ", secret " + rep.Token.Secret
	}
	if rep.Token.Subject != nil {
		tok += ", subject " + *rep.Token.Subject
	}
	if rep.Token.ExpiresAt != nil {
		tok += ", expires " + rep.Token.ExpiresAt.Format("2006-01-02T15:04:05Z")
	}
	if rep.Token.Accepted != nil {
		tok += fmt.Sprintf(", accepted by the API server: %t", *rep.Token.Accepted)
	}
	if rep.Token.Verdict != "" {
		tok += ", credential verdict " + rep.Token.Verdict
		if rep.Token.VerdictMessage != "" && rep.Token.Verdict != "ok" {
			tok += " (" + rep.Token.VerdictMessage + ")"
		}
	}
	_, _ = fmt.Fprintln(w, tok)
	for _, c := range rep.Credentials {
		line := fmt.Sprintf("credential: %s %s", c.Plugin, c.Path)
		if c.Verdict != "" {
			line += " " + string(c.Verdict)
		}
		if c.Message != "" && c.Verdict != "ok" {
			line += " (" + c.Message + ")"
		}
		_, _ = fmt.Fprintln(w, line)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "FILE\tSTATE\tCHANGED")
	for _, f := range rep.Files {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Path, f.State, strings.Join(f.ChangedPaths, ","))
	}
	_ = tw.Flush()
	if rep.Source != nil && rep.Worst() == cniconf.Drifted {
		if note := rep.Source.Install.LastingChangeNote(); note != "" {
			_, _ = fmt.Fprintln(w, note)
		}
	}
	for _, f := range rep.Files {
		if f.Message != "" && !repeats(f.Message, err) {
			_, _ = fmt.Fprintf(w, "%s: %s\n", f.Path, f.Message)
		}
		if f.Diff != "" {
			printDiff(w, f.Diff)
		}
		printSuggestions(w, f)
	}
	return nil
}

// printSuggestions prints one block per suggestion: the path, where the
// lasting change goes, and the command to paste. A command the block before
// already printed (one template holds every literal edit) is not repeated.
func printSuggestions(w io.Writer, f cniconf.FileStatus) {
	if len(f.Suggestions) == 0 {
		return
	}
	_, _ = fmt.Fprintf(w, "\nTo keep the edits of %s across a calico-node restart:\n", f.Path)
	given := map[string]string{} // command → the path it was printed for
	for _, s := range f.Suggestions {
		head := fmt.Sprintf("\n  %s: ", s.Path)
		switch s.Kind {
		case "none":
			_, _ = fmt.Fprintf(w, "%scannot be kept: %s\n", head, s.Reason)
			continue
		case "template":
			_, _ = fmt.Fprintf(w, "%sin the template, key %s of %s\n", head, s.Key, s.Target)
		default:
			_, _ = fmt.Fprintf(w, "%sset %s to %q in %s (%s)\n", head, s.Key, s.Value, s.Target, s.Kind)
		}
		_, _ = fmt.Fprintf(w, "    %s\n", s.Reason)
		if first, ok := given[s.Command]; ok {
			_, _ = fmt.Fprintf(w, "    the same command as for %s\n", first)
			continue
		}
		_, _ = fmt.Fprintf(w, "    %s\n", s.Command)
		given[s.Command] = s.Path
	}
}
