//go:build profile

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on the default mux
	"os"
)

// Built with -tags profile, and never so for an image, the program serves
// net/http/pprof on $CALICO_CNI_SYNC_PPROF_ADDR (e.g. 127.0.0.1:6060), so a
// benchmark can take a CPU profile and an execution trace of the agent as it
// runs. The shipped binary has neither the handler nor the variable.
func init() {
	if addr := os.Getenv("CALICO_CNI_SYNC_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }() //nolint:gosec // a test build on loopback
	}
}
