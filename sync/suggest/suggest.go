// Package suggest says where a hand edit of a node's CNI files must be made
// so that it lasts: the ConfigMap key, the DaemonSet variable, the template
// or the tigera operator's Installation field that install-cni (or the
// operator) would take it from at the next calico-node restart, as a kubectl
// command a person can paste.
//
// It is pure logic on the rendered file, the file on disk and where
// install-cni's variables are set (installcni.Origin); the caller renders a
// second time with the suggestions applied to check them. It must not
// import client-go, nor any package that reads the inputs or runs a pass
// (sync/inputs, sync/reconcile, sync/status, sync/agent).
package suggest

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// The kinds of suggestion (the contract's names).
const (
	KindConfigMapKey = "configMapKey"
	KindDaemonSetEnv = "daemonSetEnv"
	KindTemplate     = "template"
	KindInstallation = "installation"
	KindNone         = "none"
)

// TemplateVar is the variable install-cni reads its template from.
const TemplateVar = "CNI_NETWORK_CONFIG"

// Request is one Drifted file and what it was rendered from.
type Request struct {
	Kind cniconf.Kind
	// Template, Desired and Disk: the template, the file install-cni would
	// write (it may hold the token: nothing of it is printed but values the
	// edit put on disk), and the file on disk.
	Template      string
	Desired, Disk []byte
	// Changed are the file's changed paths, for the files no template
	// holds.
	Changed []string
	// Chained are the plugin types another agent appends to the conf.
	Chained []string
	// Origins says where install-cni's variables are set.
	Origins map[string]installcni.Origin
	// DaemonSet (namespace/name) and Container are install-cni's, "" when
	// the inputs came from a ConfigMap alone.
	DaemonSet, Container string
	// Operator: the tigera operator renders the DaemonSet and its
	// cni-config from the Installation.
	Operator bool
	// Tokens are the tokens known to the caller (the source's, those on
	// disk): no suggestion may carry one, nor anything shaped like a JWT.
	Tokens []string
}

// Result is the suggestions for one file and the inputs they would give
// install-cni, for the caller to render again.
type Result struct {
	Suggestions []cniconf.Suggestion
	// Template is the template the template suggestions install, "" when
	// there is none; Env the variables the others set.
	Template string
	Env      map[string]string
}

// Actionable reports whether any suggestion is a change to make.
func (r *Result) Actionable() bool {
	for _, s := range r.Suggestions {
		if s.Kind != KindNone {
			return true
		}
	}
	return false
}

// Untokened lists the paths of edits that are not the token's.
func Untokened(edits []cniconf.TracedEdit) []string {
	var out []string
	for _, e := range edits {
		if e.Placeholder != cniconf.TokenPlaceholder {
			out = append(out, e.Path)
		}
	}
	return out
}

// For lists the suggestions for one Drifted file, one per edit. Tokens
// never appear: an edit of a token is the token policy's business, not a
// lasting change.
func For(req Request) (*Result, error) {
	res := &Result{Env: map[string]string{}}
	out, err := suggestions(req, res)
	for i, s := range out {
		if carriesToken(s, req.Tokens) {
			out[i] = none(s.Path, "the edit puts a token into the file, and a token is no template value: the template names it __SERVICEACCOUNT_TOKEN__ and the token policy keeps it current")
		}
	}
	res.Suggestions = out
	return res, err
}

// carriesToken reports whether a suggestion would print a token.
func carriesToken(s cniconf.Suggestion, tokens []string) bool {
	for _, f := range []string{s.Value, s.Command, s.Reason} {
		if cniconf.Redact(f, tokens...) != f {
			return true
		}
	}
	return false
}

func suggestions(req Request, res *Result) ([]cniconf.Suggestion, error) {
	var out []cniconf.Suggestion
	changed := req.Changed
	if i := indexOf(changed, "mode"); i >= 0 {
		out = append(out, none("mode", "the file's mode is not in any template: install-cni and the agent write the file readable by root alone"))
		changed = append(changed[:i:i], changed[i+1:]...)
	}
	if req.Kind == cniconf.KindKubeconfig {
		for _, p := range changed {
			out = append(out, none(p, "install-cni computes calico-kubeconfig from the kubernetes Service address, the cluster's CA and the token; no template holds it, so an edit is lost at the next calico-node restart"))
		}
		return out, nil
	}
	if len(changed) == 0 {
		return out, nil
	}
	tr, err := cniconf.TraceEdits(req.Template, req.Desired, req.Disk, req.Chained)
	if err != nil {
		return nil, err
	}
	if req.Operator {
		return append(out, forOperator(tr, req, res)...), nil
	}
	secret := map[string]bool{}
	vars := map[string]cniconf.Placeholder{}
	for _, p := range cniconf.Placeholders() {
		vars[p.Name] = p
		secret[p.Name] = p.Secret
	}
	tmpl := templateSuggestion(req, tr.Template)
	for _, e := range tr.Edits {
		switch {
		case secret[e.Placeholder]:
			continue
		case e.Placeholder != "":
			s := forVariable(req, e, vars[e.Placeholder])
			if s.Kind != KindNone {
				res.Env[vars[e.Placeholder].Var] = e.Value
			}
			out = append(out, s)
		default:
			if tmpl.Kind != KindNone {
				res.Template = tr.Template
			}
			s := tmpl
			s.Path, s.Value = e.Path, diskValue(req.Disk, e)
			out = append(out, s)
		}
	}
	return out, nil
}

// forVariable is the suggestion for a value a placeholder fills.
func forVariable(req Request, e cniconf.TracedEdit, p cniconf.Placeholder) cniconf.Suggestion {
	if p.Computed != "" {
		return none(e.Path, fmt.Sprintf("install-cni fills %s from %s; no ConfigMap or template holds the value", p.Name, p.Computed))
	}
	s := cniconf.Suggestion{Path: e.Path, Key: p.Var, Value: e.Value}
	origin, set := req.Origins[p.Var]
	switch {
	case set && origin.Kind == installcni.OriginConfigMapKey:
		s.Kind, s.Target, s.Key = KindConfigMapKey, objectRef(origin.ConfigMap, "configmap"), origin.Key
		s.Command = patchConfigMap(origin.ConfigMap, origin.Key, e.Value)
		s.Reason = fmt.Sprintf("install-cni fills %s from %s, which the DaemonSet takes from this key", p.Name, p.Var)
	case set && origin.Kind == installcni.OriginField:
		return none(e.Path, fmt.Sprintf("install-cni fills %s from %s, which the pod gets from the downward API; no ConfigMap or template holds the value", p.Name, p.Var))
	case req.DaemonSet == "":
		return none(e.Path, fmt.Sprintf("install-cni fills %s from %s in its own environment, which the agent cannot see with --source=configmap: set %s on calico-node's install-cni container (with --source=daemonset the agent prints the command)", p.Name, p.Var, p.Var))
	default:
		s.Kind, s.Target = KindDaemonSetEnv, objectRef(req.DaemonSet, "daemonset")
		s.Command = setEnv(req.DaemonSet, req.Container, p.Var, e.Value)
		s.Reason = fmt.Sprintf("install-cni fills %s from %s", p.Name, p.Var)
		if set && origin.Kind == installcni.OriginService {
			s.Reason += ", which the kubelet sets from the kubernetes Service unless the container sets it"
		}
	}
	return s
}

// templateSuggestion is the suggestion shared by every literal edit: the
// template with all of them merged in, installed where the DaemonSet reads
// it.
func templateSuggestion(req Request, template string) cniconf.Suggestion {
	origin, set := req.Origins[TemplateVar]
	switch {
	case set && origin.Kind == installcni.OriginConfigMapKey:
		return cniconf.Suggestion{Kind: KindTemplate, Target: objectRef(origin.ConfigMap, "configmap"), Key: origin.Key,
			Command: patchConfigMap(origin.ConfigMap, origin.Key, template),
			Reason:  "the template holds this value literally: the command installs the template with every edit of this file merged in and every placeholder kept"}
	case set && origin.Kind == installcni.OriginValue && req.DaemonSet != "":
		return cniconf.Suggestion{Kind: KindTemplate, Target: objectRef(req.DaemonSet, "daemonset"), Key: TemplateVar,
			Command: setEnv(req.DaemonSet, req.Container, TemplateVar, template),
			Reason:  "the template, set literally on the DaemonSet, holds this value: the command sets the template with every edit of this file merged in and every placeholder kept"}
	}
	return cniconf.Suggestion{Kind: KindNone,
		Reason: "the template holds this value literally, and it comes from a file the agent was given, not from the cluster: change that file's template"}
}

// diskValue is the value the edit put at its path, as JSON ("" when it
// removed the value).
func diskValue(disk []byte, e cniconf.TracedEdit) string {
	if e.Removed {
		return ""
	}
	var doc any
	if json.Unmarshal(disk, &doc) != nil {
		return ""
	}
	v, ok := at(doc, e.Path)
	if !ok {
		return ""
	}
	if s, isString := v.(string); isString {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func none(path, reason string) cniconf.Suggestion {
	return cniconf.Suggestion{Path: path, Kind: KindNone, Reason: reason}
}

// objectRef is namespace/kind/name.
func objectRef(namespaced, kind string) string {
	ns, name, _ := strings.Cut(namespaced, "/")
	return ns + "/" + kind + "/" + name
}

func patchConfigMap(namespaced, key, value string) string {
	ns, name, _ := strings.Cut(namespaced, "/")
	patch, _ := json.Marshal(map[string]any{"data": map[string]string{key: value}})
	return fmt.Sprintf("kubectl patch configmap %s -n %s --type merge -p %s", name, ns, shellQuote(string(patch)))
}

func setEnv(namespaced, container, name, value string) string {
	ns, ds, _ := strings.Cut(namespaced, "/")
	return fmt.Sprintf("kubectl set env daemonset/%s -n %s -c %s %s", ds, ns, container, shellQuote(name+"="+value))
}

// shellQuote quotes s for a POSIX shell, unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.=/:,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
