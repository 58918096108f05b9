// Package sandbox is the kubelet's word that a pod's sandbox could not be
// created on this node: its FailedCreatePodSandBox events, as one watch
// delivers them. It owns that watch and the failures it has seen; it hands
// each new failure on this node to a callback (the agent probes the CNI
// credential at once) and answers "which failures on this node since T"
// from its cache (a rollout's health gate asks it after applying a
// revision).
//
// It does not judge a failure (sync/stuck does that for report --stuck),
// probe anything, or decide what a failure leads to. It must not import
// sync/inputs, sync/reconcile, sync/status, sync/agent, sync/stuck or cmd:
// the agent imports it, and the agent may not depend on sync/stuck.
//
// # One watch, and what it costs at 5000 nodes
//
// The kubelet writes the event in the pod's namespace (core/v1, by its
// legacy recorder), with source {component: kubelet, host: <node>} and the
// pod as involvedObject. The API server can select events by reason, by
// source (the component, not the host) and by involvedObject.*, not by
// host, so no request can ask for "this node's" events: the watch selects
// reason=FailedCreatePodSandBox,source=kubelet,involvedObject.kind=Pod
// in every namespace, and the host is compared here. Other nodes'
// failures are shrunk to their name and resourceVersion as they arrive, so
// the cache holds only this node's in full.
//
// What that costs, with the alternatives weighed (measured by
// BenchmarkSandboxWatchCost in test/e2e; docs/BENCHMARKS.md has the run):
//
//   - The API server keeps no watch cache for events (they are its busiest
//     resource and live an hour). Each watch is an etcd watch on every
//     event of the cluster: the API server decodes each event written, of
//     any reason, once per watch, and sends only the matching ones. That
//     measured about 34 µs of API server CPU per event written per watch:
//     at 5000 agents, 170 ms per event written anywhere in the cluster, 8.5
//     cores at 50 events a second. A sandbox failure itself then reaches
//     every agent (a few hundred bytes each), and an outage that fails
//     every node's pods sends each agent every node's failures, which it
//     drops.
//   - A periodic list instead reads every event in etcd per list (the
//     selector is applied after the read): at any useful period that is
//     more than the watch, and it is late by its period.
//   - A watch per pod (involvedObject.uid) needs the node's pods in every
//     namespace, a grant to read every pod of the cluster, for a watch
//     that costs the same per event written.
//   - One watcher for the cluster that relays failures to nodes would cost
//     one decode per event, at the price of another component; it is the
//     design for a large cluster, not built yet.
//
// So the watch is opt-in (--probe-on-sandbox-failure, with
// --credential-probe): cheap on a cluster of tens or a few hundred nodes,
// and not what a 5000-node cluster should run. The agent rate-limits what
// a failure triggers itself, not this package: every failure on the node
// is kept for Since.
package sandbox
