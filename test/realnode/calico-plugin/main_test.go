package main

import (
	"strings"
	"testing"
)

// TestUnderlayFits: the stand-in's MTU rule, a conf's mtu against the
// underlay's the harness sets.
func TestUnderlayFits(t *testing.T) {
	for _, tc := range []struct {
		mtu      int
		underlay string
		err      string
	}{
		{0, "1500", ""},    // Calico detects it
		{1440, "1500", ""}, // VXLAN's
		{1500, "1500", ""}, // equal fits
		{9001, "1500", "mtu 9001 is above the underlay's 1500"},
		{1501, "1500", "mtu 1501 is above the underlay's 1500"},
		{9001, "9001", ""},
		{-1, "1500", "mtu -1 is not a valid MTU"},
		{1500, "", "CALICO_STANDIN_UNDERLAY_MTU is not set"},
		{1500, "jumbo", `CALICO_STANDIN_UNDERLAY_MTU="jumbo" is not a positive number`},
		{1500, "0", `CALICO_STANDIN_UNDERLAY_MTU="0" is not a positive number`},
	} {
		err := underlayFits(tc.mtu, tc.underlay)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("mtu %d, underlay %q: %v, want it to fit", tc.mtu, tc.underlay, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("mtu %d, underlay %q: %v, want %q", tc.mtu, tc.underlay, err, tc.err)
		}
	}
}
