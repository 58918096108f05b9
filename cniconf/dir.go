package cniconf

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// Dir is the node's CNI directory with the agent's backup and state
// directories and its drift policy.
type Dir struct {
	NetDir      string
	BackupDir   string
	StateDir    string
	Policy      Policy
	BackupsKept int
	Now         func() time.Time
	// Settle is how long a corrupt file must have been left alone before it
	// is replaced. An editor that truncates and then writes leaves an empty
	// or partial file for a moment; replacing it then would lose the edit.
	// Zero (--once) acts at once.
	Settle time.Duration
	// SettleParsed is the same for a file that parses but whose token
	// would be replaced: calico-node writes calico-kubeconfig with a plain
	// truncate-and-write, and a reader between the two can see a
	// well-formed file holding half a token.
	SettleParsed time.Duration
	// ChainedTypes are the plugin types other node agents append to
	// Calico's conflist (istio-cni, linkerd-cni): not hand edits. They are
	// set aside when the file is compared and kept, after the rendered
	// plugins, when it is rewritten. nil means DefaultChainedTypes; an
	// empty non-nil list means none.
	ChainedTypes []string
	// MetaTypes are the plugin types of a config sorting before Calico's
	// that delegates to it (multus): such a config does not make Calico's
	// Shadowed. nil means DefaultMetaTypes; an empty non-nil list means
	// none.
	MetaTypes []string
	// Renaming, when set, is told the path of a managed file just before
	// a new version is renamed into place, and the function it returns
	// whether the rename happened. The agent's watch of the directory
	// tells its own writes from other writers' by it.
	Renaming func(path string) func(renamed bool)
	// Parses, when set, keeps parsed contents from one pass to the next
	// (the agent); nil parses each content once per Observation.
	Parses *Parses
	// Rewrites, when set, counts the rewrites of a chained plugin's copy
	// of Calico's conflist from one pass to the next (the agent), so its
	// status gives the writer's rhythm; nil counts none.
	Rewrites *Rewrites
}

func (d *Dir) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Check reports the state of every desired file and writes nothing. It is
// one Observation's Check: a pass that asks more of the disk observes it
// once and asks the observation.
func (d *Dir) Check(want *Desired) []FileStatus {
	return d.Observe().Check(want)
}

// Sync is one Observation's Sync.
func (d *Dir) Sync(want *Desired, dryRun bool) ([]Outcome, error) {
	return d.Observe().Sync(want, dryRun)
}

// TokensOnDisk are the distinct tokens the node's files hold now: the ones
// the CNI plugin will present to the API server. It is one Observation's
// Tokens.
func (d *Dir) TokensOnDisk(want *Desired) []string {
	return d.Observe().Tokens(want)
}

// Check reports the state of every desired file as observed.
func (o *Observation) Check(want *Desired) []FileStatus {
	out := make([]FileStatus, 0, len(want.Files))
	for _, f := range want.Files {
		st, _, _, _ := o.inspect(f, want, true)
		out = append(out, st)
	}
	return out
}

// Sync puts every desired file right as the state table says, and returns
// what it found and did. With dryRun it writes nothing but says what would
// change, with diffs; a Sync that writes leaves the diffs out (what is
// reported is the state after it, from Check), so a write never waits for
// one. The observation follows the writes: a Check after Sync reports what
// Sync left, without reading the files again.
//
// The order makes every instant safe: the state directory is locked (a
// --once and the agent never interleave) and cleared of temporary files that
// killed writers left; then every backup is made, every new version written
// to its temporary file and every intended write recorded (naming that
// temporary file) before the first file changes, so a full or read-only
// state or backup directory changes nothing; then the files are renamed into
// place, what they refer to first (the kubeconfig before the conf). The
// record needs no second save after the rename: the file renamed into place
// is the one it names (see Record). A process killed anywhere leaves each
// file equal to what its record says was written or was about to be.
func (o *Observation) Sync(want *Desired, dryRun bool) ([]Outcome, error) {
	d := o.dir
	if !dryRun {
		unlock, err := d.lock()
		if err != nil {
			return d.failAll(want, err), err
		}
		defer unlock()
		d.removeTemps(want)
	}
	steps := make([]*step, len(want.Files))
	for i, f := range want.Files {
		steps[i] = o.planFile(f, want, dryRun)
	}
	if !dryRun {
		if changes(steps) {
			if err := d.probeWritable(); err != nil {
				return d.failAll(want, err), err
			}
		}
		err := d.apply(want, steps)
		o.followed(steps, err)
		if err != nil {
			out := outcomes(steps)
			for i := range out {
				if out[i].Message == "" {
					out[i].Message = Redact(err.Error(), want.Token)
				}
			}
			return out, err
		}
	}
	return outcomes(steps), nil
}

// changes reports whether any step changes a file or makes a backup.
func changes(steps []*step) bool {
	for _, s := range steps {
		if s.write != nil || s.backup || s.chmod {
			return true
		}
	}
	return false
}

func outcomes(steps []*step) []Outcome {
	out := make([]Outcome, len(steps))
	for i, s := range steps {
		out[i] = s.status
	}
	return out
}

// failAll reports every file as Error with err, changing nothing.
func (d *Dir) failAll(want *Desired, err error) []Outcome {
	msg := Redact(err.Error(), want.Token)
	out := make([]Outcome, 0, len(want.Files))
	for _, f := range want.Files {
		out = append(out, Outcome{FileStatus: FileStatus{Path: filepath.Join(d.NetDir, f.Name), State: Error, ChangedPaths: []string{}, Message: msg}})
	}
	return out
}

// inspect classifies one observed file; with diff, the status shows how the
// file differs. f is returned as this directory compares it (chainedView),
// parsing through the observation.
func (o *Observation) inspect(f *File, want *Desired, diff bool) (FileStatus, onDisk, judgement, *File) {
	d := o.dir
	seen := o.file(f.Name)
	f = o.view(f)
	path := filepath.Join(d.NetDir, f.Name)
	od, err := seen.od, seen.readErr
	if err == nil && od.dir {
		err = fmt.Errorf("%s is a directory, not a file: move it away (the agent never removes a directory)", path)
	}
	if err != nil {
		j := judgement{state: Error, reason: err.Error()}
		return FileStatus{Path: path, State: Error, ChangedPaths: []string{}, Message: j.reason}, od, j, f
	}
	rec, err := seen.rec, seen.recErr
	if err != nil {
		j := judgement{state: Error, reason: err.Error()}
		return FileStatus{Path: path, State: Error, ChangedPaths: []string{}, Message: j.reason}, od, j, f
	}
	var j judgement
	if od.odd != "" {
		j = judgement{state: Corrupt, reason: od.odd}
	} else {
		j = classify(od.data, od.exists, f, rec)
		j.modeWrong = od.exists && f.HoldsToken() && !od.safeMode()
	}
	state, changed := j.reported()
	st := FileStatus{Path: path, State: state, ChangedPaths: changed, Message: j.reason, Chained: chainedNames(j.chained)}
	if st.ChangedPaths == nil {
		st.ChangedPaths = []string{}
	}
	if j.modeWrong {
		st.Message = joinMessage(st.Message, fmt.Sprintf("mode %s (owner uid %d) lets others read the token", od.mode.Perm(), od.uid))
	}
	if j.state != InSync && diff {
		st.Diff = f.diff(path, od.data, od.exists, j, want.Token)
		if od.odd != "" {
			st.Diff = fmt.Sprintf("--- %s (on disk)\n+++ %s (desired)\n(not diffed: the file on disk is %s)\n", path, path, od.odd)
		}
	}
	if f.Kind == KindConf && state == InSync {
		if first := d.firstConf(); first != "" && first != f.Name {
			st.State = Shadowed
			st.Message = fmt.Sprintf("%s sorts before %s, so the container runtime loads it instead", first, f.Name)
			if c, ok := d.copyOf(first, f); ok {
				// A chained plugin's own copy of this file, with
				// its entry appended: the runtime loads Calico's
				// plugins through it.
				st.State, st.Message = c.describe(first, f.Name)
			}
		}
	}
	return st, od, j, f
}

// diff is the diff a status shows from disk to what a rewrite would put
// in place, with token hidden and the tokens the file on disk holds.
func (f *File) diff(path string, disk []byte, exists bool, j judgement, token string) string {
	tokens := []string{token}
	if disk != nil {
		if snap, err := f.parse(disk, f.tokenFields); err == nil {
			tokens = append(tokens, snap.tokens...)
		}
	}
	return FileDiff(path, disk, exists, j.keepChained(f.Content), tokens...)
}

func joinMessage(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// settling is how much longer a file that just changed should be left alone.
//
// A modification time in the future (a clock that jumped back, a file
// copied with its times) says nothing about when the file last changed, so
// it is not waited on: waiting for it could freeze the file for good.
func (d *Dir) settling(od onDisk, settle time.Duration) time.Duration {
	if settle <= 0 || !od.exists {
		return 0
	}
	if age := d.now().Sub(od.mtime); age >= 0 && age < settle {
		return settle - age
	}
	return 0
}

// firstConf is the file whose network a libcni-based runtime (containerd,
// CRI-O) uses: the first by name with a CNI extension, with the configs of
// meta-plugins that delegate to it passed over (loadedFirst).
func (d *Dir) firstConf() string {
	files, err := libcni.ConfFiles(d.NetDir, ConfExtensions)
	if err != nil || len(files) == 0 {
		return ""
	}
	slices.Sort(files)
	return filepath.Base(d.loadedFirst(files))
}

// step is what Sync will do to one file.
type step struct {
	status Outcome
	file   *File
	disk   []byte
	// backupData is what a backup keeps: the file, or for something that
	// is not a readable regular file, what it was.
	backupData []byte
	// modeWrong: the file holds a token and others may read it; chmod
	// closes it when it is not rewritten.
	modeWrong, chmod bool
	// write is the content to put in place (nil: none); backup says the
	// file on disk is copied away first; record says write (or, with write
	// nil, the file as it is) is the agent's own content from now on.
	write          []byte
	backup, record bool
	action         Action
	prev           *Record
	// od is the file as observed; staged is write in its temporary file,
	// before the rename.
	od     onDisk
	staged *staged
}

// planFile inspects one file, in an observation of its own, and decides
// what to do with it.
func (d *Dir) planFile(f *File, want *Desired, diff bool) *step {
	return d.Observe().planFile(f, want, diff)
}

// planFile inspects one file and decides what to do with it.
func (o *Observation) planFile(f *File, want *Desired, diff bool) *step {
	st, od, j, f := o.inspect(f, want, diff)
	return o.dir.plan(st, f, od, j)
}

// plan decides the state table's action for one file.
func (d *Dir) plan(st FileStatus, f *File, od onDisk, j judgement) *step {
	disk := od.data
	s := &step{status: Outcome{FileStatus: st}, file: f, disk: disk, backupData: disk, action: ActionWritten, od: od}
	if od.odd != "" {
		s.backupData = fmt.Appendf(nil, "# %s was %s\n", st.Path, od.odd)
	}
	defer func() { s.modeWrong, s.chmod = j.modeWrong, j.modeWrong && s.write == nil }()
	switch j.state {
	case Missing:
		s.write, s.record = f.Content, true
	case Outdated:
		s.write, s.record = j.keepChained(f.withToken(j.keepToken)), true
	case StaleToken:
		if wait := d.settling(od, d.SettleParsed); wait > 0 {
			s.status.SettleFor = wait
			return s
		}
		s.write, s.record, s.action = j.keepChained(f.Content), true, ActionRotated
		if j.caStale {
			// The CA is what is stale: the token on disk, when healthy,
			// stays.
			s.write, s.action = f.withToken(j.keepToken), ActionCARepaired
		}
	case Corrupt:
		if wait := d.settling(od, d.Settle); wait > 0 {
			s.status.SettleFor = wait
			s.status.Message = "changed moments ago; waiting for the writer to finish"
			return s
		}
		s.write, s.backup, s.record = f.Content, true, true
	case Drifted:
		// A hand edit is backed up when first seen, under either policy:
		// another writer (calico-node) may replace it later.
		s.backup = true
		if d.Policy == PolicyEnforce {
			s.write, s.record, s.action = j.keepChained(f.withToken(j.keepToken)), true, ActionRestored
		} else if j.tokenStale || j.caStale {
			merged, ok := disk, true
			s.action = ActionRotated
			if j.caStale {
				merged, ok = mergeCA(merged, f)
				s.action = ActionCARepaired
			}
			if ok && j.tokenStale {
				merged, ok = mergeToken(merged, f)
			}
			if !ok {
				s.status.Message = joinMessage(s.status.Message, "the edited file's token or CA could not be replaced without touching the edit; the file is left as it is")
				return s
			}
			s.write = merged
		}
	case InSync:
		s.record = true
	}
	s.status.WouldChange = s.write != nil || j.modeWrong
	return s
}
