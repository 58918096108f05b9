package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	const rev = "24e166731bd8b98686ce5c4e183dbfc3383b5041"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{name: "make: -ldflags wins, revision from the build",
			stamped: "v0.3.0-4-g24e1667", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			want: "calico-cni-sync v0.3.0-4-g24e1667 (revision " + rev + ")"},
		{name: "go build in a dirty work tree",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127042719-24e166731bd8+dirty"}, Settings: vcs("true")},
			want: "calico-cni-sync v0.0.0-20261127042719-24e166731bd8+dirty (revision " + rev + ", modified)"},
		{name: "go install module@version: a tag, no VCS data",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}},
			want: "calico-cni-sync v1.2.3 (revision unknown)"},
		{name: "go install module@commit: the pseudo-version names the commit",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127042719-24e166731bd8"}},
			want: "calico-cni-sync v0.0.0-20261127042719-24e166731bd8 (revision 24e166731bd8)"},
		{name: "pre-release pseudo-version",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0-rc.1.0.20261127042719-24e166731bd8"}},
			want: "calico-cni-sync v1.3.0-rc.1.0.20261127042719-24e166731bd8 (revision 24e166731bd8)"},
		{name: "-buildvcs=false, no stamp",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: "calico-cni-sync unknown (revision unknown)"},
		{name: "no build info at all", want: "calico-cni-sync unknown (revision unknown)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.stamped, tc.bi); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	code, out, errOut := runArgs("version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "calico-cni-sync ") || !strings.Contains(out, "(revision ") {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
