package installcni

import "testing"

// The cases follow the kubelet's own (k8s.io/kubernetes
// third_party/forked/golang/expansion/expand_test.go), on which the pods of
// a cluster depend.
func TestExpandVars(t *testing.T) {
	vars := map[string]string{"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
	lookup := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
	cases := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"$(VAR_A)", "A"},
		{"___$(VAR_B)___", "___B___"},
		{"$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"},
		{"$(VAR_A)$(VAR_B)", "AB"},
		{"$(VAR_REF)", "$(VAR_A)"}, // no recursion
		{"$(VAR_EMPTY)", ""},
		{"$(UNKNOWN)", "$(UNKNOWN)"},
		{"$(UNKNOWN)-$(VAR_A)", "$(UNKNOWN)-A"},
		{"$$(VAR_A)", "$(VAR_A)"},
		{"$$$(VAR_A)", "$A"},
		{"$$$$(VAR_A)", "$$(VAR_A)"},
		{"$$", "$"},
		{"$", "$"},
		{"x$", "x$"},
		{"$x", "$x"},
		{"$(", "$("},
		{"$(VAR_A", "$(VAR_A"},
		{"$()", "$()"},
		{"$(VAR_A)$(", "A$("},
		{"$(VAR_A)$", "A$"},
		{"$é", "$é"},
		{"$\xff", "$\uFFFD"}, // the kubelet's quirk, kept
		{"${VAR_A}", "${VAR_A}"},
		{"$(VAR_A))", "A)"},
		{"$((VAR_A))", "$((VAR_A))"},
	}
	for _, c := range cases {
		if got := expandVars(c.in, lookup); got != c.want {
			t.Errorf("expandVars(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
