// Package harness is what the test packages that run the agent against a
// real control plane share (test/e2e, test/runtime, test/scale): the suite's
// control plane and agent binary (Setup), the agent as a process (Process:
// its log, its probes, its metrics, a clean stop), and a proxy in front of
// the API server that counts the requests it forwards (Proxy).
//
// It is test code: nothing in the product imports it, and it must not
// import cmd or any package of sync.
package harness
