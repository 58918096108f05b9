package cniconf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Observation is one look at the node's managed files. Each file is read
// once, the first time a pass asks about it, through readManaged (a FIFO, a
// device or a link is described, never opened; nothing larger than
// MaxFileBytes is read), with its record; every later question of the
// pass (its state, the tokens it holds, its diff, what Sync does to it) is
// answered from what was read. Each content is parsed once per
// observation. Sync keeps the observation up to date with its own writes,
// so the state after them is reported without reading the files again.
type Observation struct {
	dir *Dir

	mu     sync.Mutex
	files  map[string]*observed
	parsed map[string]parsed
	views  map[*File]*File
}

// observed is one file as the observation found it.
type observed struct {
	od      onDisk
	readErr error
	rec     *Record
	recErr  error
}

type parsed struct {
	snap snapshot
	err  error
}

// Parses remembers the last few contents a Dir's passes parsed, across
// passes: the kubeconfig, whose YAML is the dearest thing a pass parses,
// is usually the one the last pass wrote, and a ConfigMap change leaves it
// as it was. Snapshots are only ever read.
type Parses struct {
	mu   sync.Mutex
	keys [8]string
	vals [8]parsed
	next int
}

// NewParses is an empty cache.
func NewParses() *Parses { return &Parses{} }

func (c *Parses) get(key string) (parsed, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range c.keys {
		if k == key && k != "" {
			return c.vals[i], true
		}
	}
	return parsed{}, false
}

func (c *Parses) put(key string, p parsed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[c.next], c.vals[c.next] = key, p
	c.next = (c.next + 1) % len(c.keys)
}

// Observe starts an observation of the directory. It reads nothing yet.
func (d *Dir) Observe() *Observation {
	return &Observation{dir: d, files: map[string]*observed{}, parsed: map[string]parsed{}, views: map[*File]*File{}}
}

// file is the named file as observed, read on first use.
func (o *Observation) file(name string) *observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	if f, ok := o.files[name]; ok {
		return f
	}
	f := &observed{}
	f.od, f.readErr = readManaged(filepath.Join(o.dir.NetDir, name))
	if f.readErr == nil {
		f.rec, f.recErr = loadRecord(o.dir.StateDir, o.dir.NetDir, name)
		f.rec = f.rec.settled(f.od.exists, f.od.id)
	}
	o.files[name] = f
	return f
}

// view is f as the directory compares it (chainedView), parsing through
// the observation; it is made once per desired file and observation.
func (o *Observation) view(f *File) *File {
	o.mu.Lock()
	v, ok := o.views[f]
	o.mu.Unlock()
	if ok {
		return v
	}
	v = o.memoized(o.dir.chainedView(f))
	o.mu.Lock()
	o.views[f] = v
	o.mu.Unlock()
	return v
}

// RecordedRevision is the revision the record of a managed file holds
// for its last write; "" when there is no record or it names none.
func (o *Observation) RecordedRevision(name string) string {
	if f := o.file(name); f.rec != nil {
		return f.rec.Revision
	}
	return ""
}

// memoized is f parsing through the observation: a content is parsed once
// whatever asks (its state, its record, its tokens, the state after a
// write).
func (o *Observation) memoized(f *File) *File {
	v := *f
	parse := f.parse
	v.parse = func(data []byte, fields []TokenField) (snapshot, error) {
		key := f.Name + "\x00" + f.aside + "\x00" + fmt.Sprint(fields) + "\x00" + string(data)
		o.mu.Lock()
		p, ok := o.parsed[key]
		o.mu.Unlock()
		if !ok && o.dir.Parses != nil {
			p, ok = o.dir.Parses.get(key)
		}
		if ok {
			return p.snap, p.err
		}
		p.snap, p.err = parse(data, fields)
		o.mu.Lock()
		o.parsed[key] = p
		o.mu.Unlock()
		if o.dir.Parses != nil && p.err == nil {
			o.dir.Parses.put(key, p)
		}
		return p.snap, p.err
	}
	return &v
}

// Tokens are the distinct tokens the desired files hold on disk: the ones
// the CNI plugin will present to the API server. A file that is no readable
// config holds none.
func (o *Observation) Tokens(want *Desired) []string {
	var out []string
	for _, f := range want.Files {
		seen := o.file(f.Name)
		if seen.readErr != nil || seen.od.data == nil {
			continue
		}
		snap, err := o.view(f).parse(seen.od.data, f.tokenFields)
		if err != nil {
			continue
		}
		for _, t := range snap.tokens {
			if t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// Data is a managed file's content as observed: nothing but a regular file
// within MaxFileBytes.
func (o *Observation) Data(name string) ([]byte, error) {
	seen := o.file(name)
	if seen.readErr != nil {
		return nil, seen.readErr
	}
	if !seen.od.exists || seen.od.data == nil {
		return nil, fmt.Errorf("%s holds no readable file", filepath.Join(o.dir.NetDir, name))
	}
	return seen.od.data, nil
}

// ReadManaged reads a managed file of the directory as the comparison does:
// nothing but a regular file within MaxFileBytes.
func (d *Dir) ReadManaged(name string) ([]byte, error) {
	return d.Observe().Data(name)
}

// followed brings the observation up to date with what Sync did: a file
// written holds what was written, with the agent's mode and owner, and its
// record is the one Sync completed. After a failed apply, the files are
// read again when next asked about.
func (o *Observation) followed(steps []*step, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range steps {
		name := s.file.Name
		if err != nil {
			delete(o.files, name)
			continue
		}
		f, ok := o.files[name]
		if !ok {
			continue
		}
		if s.write != nil {
			f.od = onDisk{exists: true, data: s.write, mode: s.file.Mode, uid: os.Geteuid(), mtime: o.dir.now()}
			if s.staged != nil {
				f.od.id = s.staged.id
			}
		} else if s.chmod {
			f.od.mode, f.od.uid = FileMode, os.Geteuid()
		}
		if s.prev != nil {
			f.rec, f.recErr = s.prev, nil
		}
	}
}
