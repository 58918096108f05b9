package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// RollbackPoint is what a node's files held before it applied a revision
// rolled out in waves: what it puts back when it turns unhealthy after
// applying it. It is saved in the state directory, beside the records of
// the same CNI directory, before the revision's first file is written, so a
// node killed at any instant still knows what to put back.
//
// No token is kept: the token a file held is replaced by a placeholder,
// and the token of the pass that puts the file back takes its place (the
// old one may have expired since).
type RollbackPoint struct {
	Version int    `json:"version"`
	NetDir  string `json:"netDir"`
	// Revision is the revision applied; Previous the one the files held
	// before ("" when no record named one).
	Revision  string         `json:"revision"`
	Previous  string         `json:"previous,omitempty"`
	AppliedAt time.Time      `json:"appliedAt"`
	Files     []RollbackFile `json:"files"`
	// RolledBack, once set, says the node put the files back, when and
	// why: the revision is not applied here again.
	RolledBack *RolledBack `json:"rolledBack,omitempty"`
}

// RollbackFile is one file as it was before the revision.
type RollbackFile struct {
	Name    string      `json:"name"`
	Mode    os.FileMode `json:"mode"`
	Content []byte      `json:"content"`
}

// RolledBack says when and why a node put its files back.
type RolledBack struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// rollbackVersion is the version of the rollback point's encoding.
const rollbackVersion = 1

// tokenPlaceholder stands for the token in a rollback point's contents.
const tokenPlaceholder = "__CALICO_CNI_SYNC_TOKEN__"

// RollbackPoint is the point to save before the files named are written at
// revision: their contents as this observation read them, tokens taken out.
// previous is the revision they hold.
func (o *Observation) RollbackPoint(want *Desired, names []string, revision, previous string, now time.Time) (*RollbackPoint, error) {
	p := &RollbackPoint{Version: rollbackVersion, NetDir: o.dir.NetDir, Revision: revision, Previous: previous, AppliedAt: now.UTC()}
	for _, f := range want.Files {
		if !slices.Contains(names, f.Name) {
			continue
		}
		seen := o.file(f.Name)
		if seen.readErr != nil || !seen.od.exists || seen.od.data == nil {
			return nil, fmt.Errorf("keep %s to roll back to: it holds no readable file", filepath.Join(o.dir.NetDir, f.Name))
		}
		content := seen.od.data
		if f.HoldsToken() {
			snap, err := o.view(f).parse(content, f.tokenFields)
			if err != nil {
				return nil, fmt.Errorf("keep %s to roll back to: %w", filepath.Join(o.dir.NetDir, f.Name), err)
			}
			for _, t := range snap.tokens {
				if t != "" {
					content = bytes.ReplaceAll(content, []byte(t), []byte(tokenPlaceholder))
				}
			}
		}
		p.Files = append(p.Files, RollbackFile{Name: f.Name, Mode: seen.od.mode.Perm(), Content: content})
	}
	return p, nil
}

// Back is want with the point's files in place of the revision's: the
// files as they were, each holding want's token, recorded at the previous
// revision. Files the point does not hold are want's.
func (p *RollbackPoint) Back(want *Desired) *Desired {
	back := *want
	back.Revision = p.Previous
	back.Files = make([]*File, len(want.Files))
	for i, f := range want.Files {
		back.Files[i] = f
		for _, rf := range p.Files {
			if rf.Name != f.Name {
				continue
			}
			c := *f
			c.Content = bytes.ReplaceAll(rf.Content, []byte(tokenPlaceholder), []byte(want.Token))
			if rf.Mode != 0 {
				c.Mode = rf.Mode
			}
			back.Files[i] = &c
		}
	}
	return &back
}

// Names are the names of the point's files.
func (p *RollbackPoint) Names() []string {
	out := make([]string, len(p.Files))
	for i, f := range p.Files {
		out[i] = f.Name
	}
	return out
}

// rollbackPath is where the rollback point of netDir lives: beside its
// records, under a name no managed file has (a leading dot).
func rollbackPath(stateDir, netDir string) string {
	return filepath.Join(recordDir(stateDir, netDir), rollbackName)
}

const rollbackName = ".rollback.json"

// SaveRollbackPoint writes p atomically and durably, mode 0600.
func SaveRollbackPoint(stateDir string, p *RollbackPoint) error {
	if stateDir == "" {
		return errors.New("no --state-dir to keep what a revision replaces")
	}
	if err := os.MkdirAll(recordDir(stateDir, p.NetDir), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w (check --state-dir)", err)
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode rollback point: %w", err)
	}
	if _, err := replaceAtomic(rollbackPath(stateDir, p.NetDir), data, 0o600, nil); err != nil {
		return fmt.Errorf("save rollback point: %w (check --state-dir)", err)
	}
	return nil
}

// LoadRollbackPoint reads the rollback point of netDir; none is (nil, nil).
// A point that does not decode is an error: what to put back is not known.
func LoadRollbackPoint(stateDir, netDir string) (*RollbackPoint, error) {
	if stateDir == "" {
		return nil, nil
	}
	data, err := readSmall(rollbackPath(stateDir, netDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rollback point: %w", err)
	}
	var p RollbackPoint
	if err := json.Unmarshal(data, &p); err != nil || p.Version != rollbackVersion {
		return nil, fmt.Errorf("rollback point %s does not decode (version %d): %v", rollbackPath(stateDir, netDir), p.Version, err)
	}
	return &p, nil
}
