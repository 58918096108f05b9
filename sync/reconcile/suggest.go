package reconcile

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/suggest"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Suggest adds to each Drifted file of rep where the lasting change must be
// made (drift --suggest), from what the pass read: its inputs and its
// observation of the disk. Each manifest install's suggestions are checked
// by rendering again with them applied: a suggestion that would not give the
// edited file back says so.
func (r *Reconciler) Suggest(rep *Report, pass *Pass) error {
	if pass == nil || pass.Desired == nil {
		return nil
	}
	want, in := pass.Desired, pass.in
	for i := range rep.Files {
		st := &rep.Files[i]
		f := fileNamed(want, filepath.Base(st.Path))
		if st.State != cniconf.Drifted || f == nil {
			continue
		}
		disk, err := pass.obs.Data(f.Name)
		if err != nil {
			return err
		}
		res, err := suggest.For(suggest.Request{
			Kind: f.Kind, Template: in.Template, Desired: f.Content, Disk: disk, Changed: st.ChangedPaths,
			Chained: r.Dir.Chained(), Origins: in.Origins, DaemonSet: in.Source.DaemonSet, Container: in.Source.Container,
			Operator: in.Source.Install.Operator(), Tokens: append(pass.obs.Tokens(want), want.Token),
		})
		if err != nil {
			return fmt.Errorf("suggest a lasting change for %s: %w", st.Path, err)
		}
		if f.Kind == cniconf.KindConf && !in.Source.Install.Operator() {
			r.checkSuggestions(in, want.Token, f, disk, res)
		}
		st.Suggestions = res.Suggestions
	}
	return nil
}

// checkSuggestions renders the conf again with the suggestions applied and
// notes, on each of them, where the result still differs from the file.
func (r *Reconciler) checkSuggestions(in *inputs.Install, tok string, f *cniconf.File, disk []byte, res *suggest.Result) {
	if !res.Actionable() {
		return
	}
	again := *in
	if res.Template != "" {
		again.Template = res.Template
	}
	again.Env = func(key string) (string, bool) {
		if v, ok := res.Env[key]; ok {
			return v, true
		}
		if in.Env == nil {
			return "", false
		}
		return in.Env(key)
	}
	note := ""
	if d, err := r.render(&again, token.Token{Value: tok}); err != nil {
		note = "a render with the suggested changes fails: " + cniconf.Redact(err.Error(), tok)
	} else if g := fileNamed(d, f.Name); g == nil {
		note = "a render with the suggested changes writes no " + f.Name
	} else if tr, err := cniconf.TraceEdits(again.Template, g.Content, disk, r.Dir.Chained()); err != nil {
		note = "the suggested changes could not be checked: " + err.Error()
	} else if left := suggest.Untokened(tr.Edits); len(left) > 0 {
		note = "a render with the suggested changes still differs from the file at " + strings.Join(left, ", ")
	}
	if note == "" {
		return
	}
	for i := range res.Suggestions {
		if s := &res.Suggestions[i]; s.Kind != suggest.KindNone {
			s.Reason += "; note: " + note
		}
	}
}

func fileNamed(d *cniconf.Desired, name string) *cniconf.File {
	for _, f := range d.Files {
		if f.Name == name {
			return f
		}
	}
	return nil
}
