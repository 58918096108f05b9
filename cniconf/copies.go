package cniconf

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// CopyingTypes are the chained plugin types whose installer can write a
// copy of Calico's conflist under a name of its own, with its entry
// appended, instead of appending it to Calico's file: istio-cni with
// istioOwnedCNIConfig (02-istio-cni.conflist by default), which sorts
// before 10-calico.conflist, so the container runtime loads the copy.
// cniconf/testdata/chained/README.md says where that was read.
var CopyingTypes = []string{"istio-cni"}

// chainedCopy is what a config that sorts before f is, when it is a copy
// of f that a chained plugin's installer keeps: a conflist whose plugins
// are f's, in f's order, followed by the installer's own (CopyingTypes;
// other chained types may sit among them, as they did in the file copied).
type chainedCopy struct {
	// owner is the copying plugin's type (istio-cni).
	owner string
	// lag are the paths where the copy's Calico part differs from f: what
	// the runtime loads is not what the agent wrote. Empty: the copy is
	// current.
	lag []string
	// rewrites is how many times the copy changed in the last
	// rewriteWindow, as the passes saw it (Dir.Rewrites).
	rewrites int
}

// copyOf reads the config name in the directory and tells whether it is a
// chained plugin's copy of f, and how far it lags f. It reads the file as a
// managed file is read (no link followed, 1 MiB at most) and never writes
// it: the copy is its installer's.
func (d *Dir) copyOf(name string, f *File) (chainedCopy, bool) {
	if f.Kind != KindConf || filepath.Ext(name) != ".conflist" {
		return chainedCopy{}, false
	}
	od, err := readManaged(filepath.Join(d.NetDir, name))
	if err != nil || od.odd != "" || od.data == nil {
		return chainedCopy{}, false
	}
	plugins := pluginsOf(od.data)
	if len(plugins) == 0 {
		return chainedCopy{}, false
	}
	owner := pluginType(plugins[len(plugins)-1])
	if !slices.Contains(CopyingTypes, owner) {
		return chainedCopy{}, false
	}
	aside := append(slices.Clone(d.chainedTypes()), CopyingTypes...)
	want := pluginsOf(f.Content)
	var wantTypes, gotTypes []string
	for _, p := range want {
		wantTypes = append(wantTypes, pluginType(p))
	}
	for _, p := range plugins {
		if t := pluginType(p); !slices.Contains(aside, t) || slices.Contains(wantTypes, t) {
			gotTypes = append(gotTypes, t)
		}
	}
	if len(wantTypes) == 0 || !slices.Equal(gotTypes, wantTypes) {
		return chainedCopy{}, false
	}
	// Compared by meaning, as Calico's own file is: istio-cni re-marshals
	// what it copies (keys sorted), which is no difference.
	var notRendered []string
	for _, t := range aside {
		if !slices.Contains(wantTypes, t) {
			notRendered = append(notRendered, t)
		}
	}
	rest, _ := setAside(od.data, notRendered)
	got, err := f.parse(rest, f.tokenFields)
	if err != nil {
		return chainedCopy{}, false
	}
	wantSnap, err := f.parse(f.Content, f.tokenFields)
	if err != nil {
		return chainedCopy{}, false
	}
	lag := ChangedPaths(normalize(got.meaning), normalize(wantSnap.meaning))
	if stale, _ := tokensStale(got.tokens, f); stale && len(f.tokenFields) > 0 {
		lag = append(lag, f.tokenPaths()...)
	}
	return chainedCopy{owner: owner, lag: lag, rewrites: d.Rewrites.saw(name, od.data, d.now())}, true
}

// describe is the status of Calico's own file (InSync on disk) when the
// runtime loads the copy instead: InSync with a message when the copy is
// current, Shadowed naming where it lags otherwise. The agent never writes
// the copy: its installer owns it.
func (c chainedCopy) describe(copyName, own string) (State, string) {
	rhythm := ""
	if c.rewrites > 1 {
		rhythm = fmt.Sprintf("; %s was rewritten %d times in the last %s", copyName, c.rewrites, "10 minutes")
	}
	if len(c.lag) == 0 {
		return InSync, fmt.Sprintf("the container runtime loads %s, %s's copy of %s (Calico's plugins, then %s's), which sorts before it; the copy matches it%s", copyName, c.owner, own, c.owner, rhythm)
	}
	return Shadowed, fmt.Sprintf("the container runtime loads %s, %s's copy of %s, which sorts before it, and the copy lags it (differs at %s); the agent never writes %s's copy: %s copies Calico's config when it starts (and again only when a plugin type is missing from its copy), so restart the %s pod on this node%s",
		copyName, c.owner, own, strings.Join(c.lag, ", "), c.owner, c.owner, c.owner, rhythm)
}

// rewriteWindow is how far back a copy's rewrites are counted.
const rewriteWindow = 10 * time.Minute

// Rewrites counts how often a file the agent never writes (a chained
// plugin's copy of Calico's conflist) changed, as the passes saw it, so a
// file another process keeps rewriting is described by its writer's rhythm
// in one status, not answered write for write. Nil counts nothing.
type Rewrites struct {
	mu   sync.Mutex
	seen map[string]*rewritten
}

type rewritten struct {
	digest [32]byte
	at     []time.Time
}

// NewRewrites is an empty count (the agent keeps one for its life).
func NewRewrites() *Rewrites { return &Rewrites{seen: map[string]*rewritten{}} }

// saw records the content a pass found at name and returns how many times
// it changed within rewriteWindow before now. The first sighting is no
// change.
func (r *Rewrites) saw(name string, data []byte, now time.Time) int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := sha256.Sum256(data)
	e, ok := r.seen[name]
	if !ok {
		r.seen[name] = &rewritten{digest: sum}
		return 0
	}
	if e.digest != sum {
		e.digest = sum
		e.at = append(e.at, now)
	}
	e.at = slices.DeleteFunc(e.at, func(t time.Time) bool { return now.Sub(t) > rewriteWindow })
	return len(e.at)
}
