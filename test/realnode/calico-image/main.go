// Command calico-image stands in for the programs of Calico's own images
// (calico/node, calico/cni, pod2daemon-flexvol, flannel) on the real-node
// tests' node, so that the calico-node (or canal) pod of the install under
// test exists and runs as it would, without doing Calico's work: the node's
// CNI files are written by the agent under test, not by install-cni.
//
// It is one binary installed under each path the DaemonSets run, and it
// behaves by the name it was run as and its arguments:
//   - init containers and probes exit 0 at once: install (install-cni),
//     calico-ipam -upgrade, calico-node -init, flexvol, and calico-node with
//     -felix-live, -felix-ready, -bird-live, -bird-ready or -shutdown;
//   - anything else (calico-node's main container, v2.x's install-cni.sh
//     container, flanneld) sleeps until SIGTERM, as a long-running container;
//     calico-node also answers its health port, 9099.
package main

import (
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	if exitsAtOnce(filepath.Base(os.Args[0]), os.Args[1:]) {
		return
	}
	if filepath.Base(os.Args[0]) == "calico-node" {
		// calico-node's HTTP health endpoints (:9099), which some installs
		// probe instead of running calico-node -felix-live. A second
		// calico-node on the node finds the port taken and only sleeps.
		go func() {
			_ = http.ListenAndServe(":9099", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

func exitsAtOnce(name string, args []string) bool {
	switch name {
	case "install", "calico-ipam", "flexvol":
		return true
	}
	for _, a := range args {
		switch a {
		case "-init", "-felix-live", "-felix-ready", "-bird-live", "-bird-ready", "-shutdown":
			return true
		}
	}
	return false
}
