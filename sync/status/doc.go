// Package status is what the cluster and the node's operator see of the
// agent: the CalicoCNIConfigDrift Node condition, encoded (ConditionFor) and
// decoded (NodeStateOf, TokenEvidence) here and nowhere else, and the
// CalicoCNICredentialHealthy condition (CredentialConditionFor); the Events;
// the Publisher that patches the condition and writes the status file apart
// from the passes; the Prometheus metrics; the per-node Lease and the
// health probes.
//
// It reads a pass's Report and Pass (package sync/reconcile) and never
// runs one: it must not import sync/agent, and nothing in cmd.
package status
