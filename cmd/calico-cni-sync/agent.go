package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// runAgent runs the node agent until the context ends.
func runAgent(ctx context.Context, o *Options, logger *slog.Logger, stderr io.Writer) int {
	_, _ = fmt.Fprintln(stderr, "error: agent mode is not available yet; use --once")
	_ = ctx
	_ = o
	_ = logger
	return exitError
}

// runReport prints every node's state.
func runReport(ctx context.Context, o *Options, stdout, stderr io.Writer) int {
	_, _ = fmt.Fprintln(stderr, "error: report is not available yet")
	_, _, _ = ctx, o, stdout
	return exitError
}
