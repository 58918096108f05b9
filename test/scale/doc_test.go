// Package scale runs many real calico-cni-sync agents, each a process with
// its own Node, CNI directory, state and identity, against one real control
// plane on this machine, and measures what the API server and the nodes see
// at start-up, on a ConfigMap change, on a token Secret regeneration, under
// calico-node's token refresher, across an API server restart and while
// idle. It owns the measurements only: the agent is the one the image ships,
// run with --rollout=immediate (a ConfigMap change reaches every node at
// once, as one annotated immediate does; the default, waves, paces it on
// purpose), the control plane is test/controlplane's.
//
// Run it with `go test -run '^$' -bench BenchmarkScale -benchtime 1x
// ./test/scale/`; env N sets the number of agents (default 50), IDLE the
// idle window (default 2m, with the agents' periods scaled down; 10m or more
// runs them at their defaults) and SCALE_JSON a file for a JSON summary
// ({N} in it is replaced by N). To try a runtime setting or a profiling
// build at scale: SCALE_AGENT_ENV adds environment to every agent (e.g.
// "GOGC=50"), SCALE_AGENT_BINARY replaces the agent build.
// A plain `go test` runs only the unit tests of the harness itself.
package scale
