// Package rollout stages a ConfigMap-borne change of the CNI files the way a
// DaemonSet update is staged: a revision (a digest of the inputs) reaches the
// canary nodes first and the rest in waves, each wave opening only while the
// nodes that already applied it are healthy.
//
// There is no coordinator. Each agent publishes where its node stands on a
// revision in an annotation of its own Lease (State, under StateAnnotation),
// and reads its peers' Leases to judge the gate. report --rollout reads the
// same annotations.
//
// It must not import sync/reconcile, sync/status, sync/agent, sync/stuck or
// cmd: the pass asks it what to do, the status publisher writes its State.
package rollout
