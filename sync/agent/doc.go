// Package agent is the node agent's loop: one rate-limited workqueue key
// (Queue) that every trigger goes through, the watch of the CNI directory
// (fsnotify, with the filter of the agent's own renames, OwnWrites), the
// periodic resync and token-check ticks, and the liveness checks. A pass is
// reconcile.Reconciler's Reconcile; the agent only decides when to run the
// next one (hold: a file settling, inputs failing for a moment) and hands
// the report to status.Publisher.
//
// NewAgent receives its parts built and writes no field of any of them.
// The package must not import cmd; nothing below it imports it.
package agent
