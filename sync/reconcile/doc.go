// Package reconcile is the one road every trigger takes: Reconciler's
// Reconcile computes what the node's files should be, compares them with the
// disk and, as the mode allows, puts them right. --once, drift, render and
// each pass of the agent's loop run it. The Reconciler is built once, by the
// command, and never written afterwards.
//
// # One pass
//
// A ConfigMap update, traced to the report (source configmap, the agent):
//
//  1. The ConfigMap informer's handler (sync/inputs) calls the agent queue's
//     Trigger, and the agent's worker runs Reconcile(ModeSync).
//  2. Reconcile starts one cniconf.Observation: nothing is read yet.
//  3. plan asks the Install source for the inputs (the informer's cache);
//     token.PolicyFor decides the policy; the files are rendered
//     (cniconf.BuildDesired). Under policy own the token source gives the
//     token. Under policy guard, plan asks the observation for the tokens on
//     disk (this reads each managed file, once, through cniconf's safe
//     reader: a FIFO, a device or a link is described, never opened, and
//     nothing past cniconf.MaxFileBytes is read), the verdict cache for the
//     API server's word on them, and token.RepairDue, the one function that
//     says whether a token must be written; only then is the token source
//     asked (a TokenRequest the agent's RBAC may refuse), and its token
//     checked before it is used. Otherwise the files are rendered with the
//     token they hold. A repair that cannot be made (the source refuses, or
//     its token is rejected too) is refused, not failed: the rest of the
//     pass goes on, and the files holding the bad token report why.
//  4. Under --on-drift=enforce with a hand edit found, plan runs again on
//     the Fresh source (a request, not the cache), against the same
//     observation.
//  5. With a rollout gate (the agent's Reconciler.Rollout), stage asks it
//     about a file Outdated whose record names another revision (a
//     ConfigMap-borne change): while the node waits for its wave, is
//     paused or is halted, those files are left out of the sync and keep
//     their content; Report.Rollout says where the node stands.
//  6. The observation's Sync classifies each file (a file not read yet is
//     read now, once) and carries out the state table: backups, intents,
//     writes in dependency order, records. It follows its own writes, so
//     what the files now hold is known without reading them again.
//  7. The verdict cache is asked about the tokens now on disk, from the
//     observation; the observation's Check gives the state after the
//     writes; each file's Outcome joins what Sync found and did with that
//     state. The Report (what drift -o json prints and the status file
//     holds) and the Pass (the outcomes, the desired files, whether the
//     source's own token is rejected) are returned.
//  8. The agent (sync/agent) decides from the Pass whether to hold the pass
//     (a file settling, inputs failing for a moment) or report it: metrics,
//     Events and the Node condition (sync/status), each from the Pass's
//     outcomes and the Report, with no further look at the disk.
//
// Each question is decided once per pass: the inputs and the install kind in
// the Install source, the policy in token.PolicyFor, the token's health in
// token.Health, whether a repair is due in token.RepairDue, each file's
// state in the observation's classification.
//
// The tokens on disk are judged by the verdict cache (token.VerdictCache):
// a token Calico's credential on disk holds is judged by sync/probe, the
// plugin's own first request with that file's server, CA and token, when it
// first appears and once per check period (credential.go); the other
// plugins' credentials the directory's configs point to are probed at most
// once per period (Credentials) and reported, never written.
//
// It imports sync/inputs, sync/token, sync/probe, sync/suggest and cniconf;
// never sync/status, sync/agent or cmd.
package reconcile
