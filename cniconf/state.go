package cniconf

// State is what a managed file is, compared with what should be there.
type State string

// The states of the product contract, in the order that decides which one is
// reported when several apply.
const (
	Error      State = "Error"
	Missing    State = "Missing"
	Corrupt    State = "Corrupt"
	Drifted    State = "Drifted"
	Outdated   State = "Outdated"
	StaleToken State = "StaleToken"
	Shadowed   State = "Shadowed"
	InSync     State = "InSync"
)

// States are every state, in the contract's order: metrics, help and
// reports list them from here.
func States() []State {
	return []State{Error, Missing, Corrupt, Drifted, Outdated, StaleToken, Shadowed, InSync}
}

// Severity orders states: a lower number is reported first.
func (s State) Severity() int {
	for i, x := range States() {
		if s == x {
			return i
		}
	}
	return -1
}
