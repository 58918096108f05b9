package main

import (
	"regexp"
	"runtime/debug"
	"strings"
)

// readBuildInfo is what the go command recorded in the binary, or nil.
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// pseudoRevision matches the commit at the end of a pseudo-version
// (v0.0.0-20260102030405-0123456789ab), which is all a binary built by
// `go install module@version` knows of its revision: the module proxy's zip
// has no VCS data.
var pseudoRevision = regexp.MustCompile(`[0-9]{14}-([0-9a-f]{12})$`)

// buildVersion is the version this binary reports: -ldflags -X main.version
// (make and the Dockerfile stamp git describe), else the module version the
// go command recorded, else "unknown".
func buildVersion(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "unknown"
}

// versionLine is what `version` prints: the version and the VCS revision
// the binary was built from, "modified" when the work tree had uncommitted
// changes. An image build has no .git in its context: it stamps the
// revision with -ldflags -X main.revision, which then wins.
func versionLine(stamped string, bi *debug.BuildInfo) string {
	rev, modified := "", false
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev == "" {
			v, _, _ := strings.Cut(bi.Main.Version, "+")
			if m := pseudoRevision.FindStringSubmatch(v); m != nil {
				rev = m[1]
			}
		}
	}
	if revision != "" {
		rev, modified = revision, false
	}
	if rev == "" {
		rev = "unknown"
	}
	if modified {
		rev += ", modified"
	}
	return "calico-cni-sync " + buildVersion(stamped, bi) + " (revision " + rev + ")"
}
