// Command calico-cni-sync keeps Calico's CNI config and kubeconfig on a node
// equal to what the calico-config ConfigMap and the current service-account
// token say, and reports hand edits. See the README for the modes.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"k8s.io/klog/v2"
)

// version is stamped by -ldflags "-X main.version=..."; unset, the build
// info stands in (see versionLine).
var version = ""

// revision is stamped by -ldflags "-X main.revision=..." where the build has
// no VCS data of its own (an image build: .git is not in its context).
var revision = ""

// Exit codes of the product contract.
const (
	exitOK    = 0
	exitDrift = 1
	exitError = 2
)

func main() {
	if percent, set := gcPercent(os.LookupEnv); set {
		debug.SetGCPercent(percent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultGCPercent is the agent's GC target. Its live heap is about 3 MB;
// at Go's default of 100 the heap grows to twice that between collections,
// which was most of its anonymous memory (9 to 12 MiB an agent, measured
// with 200 agents). On every node of a cluster, memory is worth more than
// the little CPU the extra collections take: at 50, 8 to 9 MiB.
const defaultGCPercent = 50

// gcPercent is the GC target to set: defaultGCPercent unless GOGC is in the
// environment, which the runtime has then applied already.
func gcPercent(lookup func(string) (string, bool)) (int, bool) {
	if _, ok := lookup("GOGC"); ok {
		return 0, false
	}
	return defaultGCPercent, true
}

// run is the whole program but the process: args without the program name,
// the exit code returned.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	c := &cli{opts: NewOptions(), stdout: stdout, stderr: stderr}
	root := c.newRootCommand()
	root.SetOut(stdout)
	root.SetErr(stderr)
	// cobra falls back to os.Args when given nil.
	root.SetArgs(append([]string{}, args...))
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		printError(stderr, cmd, err)
		return exitError
	}
	return c.code
}

// maxClientVerbosity caps client-go's own verbosity: from -v 6 on it logs
// requests and, past 7, response bodies (hex-dumped protobuf among them, where
// a token would escape the redaction). 5 shows what the agent asks and why.
const maxClientVerbosity = 5

// newLogger builds the one slog logger and routes client-go's klog into it.
// -v n shows klog's V(n) lines (slog level -n) up to maxClientVerbosity: -v 0
// is info, -v 1 the agent's debug lines, -v 2..5 client-go's as well.
func newLogger(w io.Writer, o *Options) *slog.Logger {
	v := min(o.Verbosity, maxClientVerbosity)
	hopts := &slog.HandlerOptions{Level: slog.Level(-v)}
	if v >= 1 {
		hopts.Level = min(slog.LevelDebug, slog.Level(-v))
	}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if o.LogFormat == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	logger := slog.New(redactingHandler{h})
	klog.SetSlogLogger(logger)
	var klogFlags goflagSet
	klog.InitFlags(klogFlags.set())
	_ = klogFlags.fs.Set("v", fmt.Sprint(v))
	return logger
}
