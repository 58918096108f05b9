// Command calico-cni-sync keeps Calico's CNI config and kubeconfig on a node
// equal to what the calico-config ConfigMap and the current service-account
// token say, and reports hand edits. See the README for the modes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// version is stamped by -ldflags "-X main.version=...".
var version = "dev"

// Exit codes of the product contract.
const (
	exitOK    = 0
	exitDrift = 1
	exitError = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	opts := NewOptions()
	fs := pflag.NewFlagSet("calico-cni-sync", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	opts.AddFlags(fs)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage:\n  calico-cni-sync [flags]          node agent\n  calico-cni-sync --once [flags]   reconcile this node once\n"+
			"  calico-cni-sync drift [flags]    this node's state, writes nothing\n  calico-cni-sync report [flags]   every node's state\n  calico-cni-sync version\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	cmd := ""
	if rest := fs.Args(); len(rest) > 1 {
		_, _ = fmt.Fprintf(stderr, "error: unexpected arguments %q\n", rest[1:])
		return exitError
	} else if len(rest) == 1 {
		cmd = rest[0]
	}
	opts.Complete(fs)
	if cmd == "version" {
		_, _ = fmt.Fprintln(stdout, "calico-cni-sync", version)
		return exitOK
	}
	if err := opts.Validate(); err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
		return exitError
	}
	logger := newLogger(stderr, opts)
	switch {
	case cmd == "drift":
		return runDrift(ctx, opts, stdout, stderr)
	case cmd == "report":
		return runReport(ctx, opts, stdout, stderr)
	case cmd != "":
		_, _ = fmt.Fprintf(stderr, "error: unknown command %q (want drift, report or version)\n", cmd)
		return exitError
	case opts.Once:
		return runOnce(ctx, opts, stdout, stderr)
	default:
		return runAgent(ctx, opts, logger, stderr)
	}
}

// newLogger builds the one slog logger and routes client-go's klog into it.
func newLogger(w io.Writer, o *Options) *slog.Logger {
	level := slog.LevelInfo
	if o.Verbosity > 0 {
		level = slog.LevelDebug
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if o.LogFormat == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	logger := slog.New(redactingHandler{h})
	klog.SetSlogLogger(logger)
	var klogFlags goflagSet
	klog.InitFlags(klogFlags.set())
	_ = klogFlags.fs.Set("v", fmt.Sprint(o.Verbosity))
	return logger
}
