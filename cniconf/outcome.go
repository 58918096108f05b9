package cniconf

import "time"

// Policy is what happens to a hand-edited (Drifted) file.
type Policy string

// The --on-drift policies.
const (
	PolicyReport  Policy = "report"
	PolicyEnforce Policy = "enforce"
)

// Action is what Sync did to a file.
type Action string

// The actions, which the agent turns into events.
const (
	ActionNone     Action = ""
	ActionWritten  Action = "written"  // Missing, Outdated or Corrupt put right
	ActionRotated  Action = "rotated"  // the token replaced (StaleToken, or inside a kept edit)
	ActionRestored Action = "restored" // a hand edit backed up and replaced (enforce)
	// ActionCARepaired: the kubeconfig's CA, which did not verify the API
	// server, replaced by one that does (Desired.RepairCA); the token and
	// any hand edit kept.
	ActionCARepaired Action = "ca-repaired"
)

// FileStatus is one managed file's state, as drift -o json prints it.
type FileStatus struct {
	Path         string   `json:"path"`
	State        State    `json:"state"`
	ChangedPaths []string `json:"changedPaths"`
	Diff         string   `json:"diff"`
	Backup       string   `json:"backup"`
	Message      string   `json:"message,omitempty"`
	// Chained are the types of the chained plugins (DefaultChainedTypes)
	// the file holds: set aside when it was compared, kept when it is
	// rewritten.
	Chained []string `json:"chained,omitempty"`
	// Suggestions say, for a Drifted file, where the lasting change must be
	// made (drift --suggest).
	Suggestions []Suggestion `json:"suggestions,omitempty"`
}

// Outcome is what Sync found at one file and did to it: the inside of a
// pass, which the loop acts on and which is never printed as it is.
type Outcome struct {
	// FileStatus is the file as Sync found it (with its diff, in a dry
	// run), and the backup it made.
	FileStatus
	// Action is what Sync did.
	Action Action
	// WouldChange says a write is due (dry run).
	WouldChange bool
	// SettleFor is set when a file changed moments ago: a writer may be
	// half way through (truncate, then write), so nothing is done yet.
	SettleFor time.Duration
}
