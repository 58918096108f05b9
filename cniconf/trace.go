package cniconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Placeholder is one of install-cni's placeholders and what fills it: the
// variable of install-cni's environment (Var), or, when install-cni computes
// the value, what it computes it from (Computed).
type Placeholder struct {
	Name     string
	Var      string
	Computed string
	// Secret: the value is the token, never shown.
	Secret bool
}

// Placeholders lists install-cni's placeholders, in the order it replaces
// them.
func Placeholders() []Placeholder {
	var out []Placeholder
	for _, s := range (&Inputs{}).substitutions("") {
		p := Placeholder{Name: s.placeholder, Secret: s.secret}
		switch v, isEnv := strings.CutPrefix(s.source, "env "); {
		case isEnv:
			p.Var = v
		case s.placeholder == "__CNI_MTU__":
			p.Var = "CNI_MTU"
		case s.placeholder == "__ETCD_ENDPOINTS__":
			p.Var = "ETCD_ENDPOINTS"
		default:
			p.Computed = s.source
		}
		out = append(out, p)
	}
	return out
}

// Suggestion is where a lasting change must be made so that install-cni
// writes a hand edit at the next calico-node restart.
type Suggestion struct {
	Path string `json:"path"`
	// Kind is configMapKey, daemonSetEnv, template, installation or none.
	Kind string `json:"kind"`
	// Target is the object to change, as namespace/kind/name
	// (installation/default for the operator's).
	Target string `json:"target"`
	// Key is the ConfigMap key, the variable or the Installation field.
	Key     string `json:"key"`
	Value   string `json:"value"`
	Command string `json:"command"`
	Reason  string `json:"reason"`
}

// TracedEdit is one difference between the file install-cni would write and
// the file on disk, traced back to the template.
type TracedEdit struct {
	// Path is the dotted path in the file, as in FileStatus.ChangedPaths.
	Path string
	// Placeholder is set when the template fills the value from that one
	// placeholder: the lasting change is Value for what feeds it. Empty:
	// the template holds the value literally (or the edit adds or removes a
	// key), and Trace.Template holds the edit.
	Placeholder string
	Value       string
	// Removed: the edit removed the value at Path.
	Removed bool
}

// Trace is what a hand edit means for the template.
type Trace struct {
	Edits []TracedEdit
	// Template is the template with every literal edit merged in and every
	// placeholder kept, "" when no edit is literal. Keys are in the edited
	// file's order, indented by two spaces: the same JSON as the template
	// with the edits, not the same bytes.
	Template string
}

// TraceEdits follows each difference between desired (the template
// rendered) and disk back to the template. chained are plugin types another
// agent appends to the file, left out of the comparison as classify leaves
// them out.
//
// Each placeholder is replaced by a marker made of digits only, which is a
// JSON number where the placeholder stands unquoted (as __CNI_MTU__ does)
// and part of a string where it is quoted, so the marked template parses as
// JSON and every leaf says which placeholders fill it.
func TraceEdits(template string, desired, disk []byte, chained []string) (*Trace, error) {
	marked, markers, err := markTemplate(template, string(disk)+string(desired))
	if err != nil {
		return nil, err
	}
	var t, d, k any
	if err := decodeNumbers([]byte(marked), &t); err != nil {
		return nil, fmt.Errorf("the template with its placeholders marked is not JSON: %w", err)
	}
	if err := decodeNumbers(desired, &d); err != nil {
		return nil, fmt.Errorf("the rendered file: %w", err)
	}
	disk, _ = setAside(disk, chained)
	if err := decodeNumbers(disk, &k); err != nil {
		return nil, fmt.Errorf("the file on disk: %w", err)
	}
	tr := &tracer{markers: markers}
	merged := tr.walk(t, d, k, nil)
	out := &Trace{Edits: tr.edits}
	if tr.literal {
		// The merged template has the structure of the edited file: its
		// keys are written in that file's order.
		s := encodeOrdered(merged, orderOf(disk))
		for m, ph := range markers {
			s = strings.ReplaceAll(s, m, ph)
		}
		out.Template = s
	}
	sort.SliceStable(out.Edits, func(i, j int) bool { return out.Edits[i].Path < out.Edits[j].Path })
	return out, nil
}

func decodeNumbers(data []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// markTemplate replaces each known placeholder by a marker that occurs
// nowhere in the template nor in avoid (the files compared, whose values the
// merged template may take); markers maps it back.
func markTemplate(template, avoid string) (string, map[string]string, error) {
	markers := map[string]string{}
	for i, p := range Placeholders() {
		if !strings.Contains(template, p.Name) {
			continue
		}
		m := ""
		for salt := 0; m == "" || strings.Contains(template, m) || strings.Contains(avoid, m); salt++ {
			m = fmt.Sprintf("9%03d%06d7", i, 271828+salt)
		}
		markers[m] = p.Name
		template = strings.ReplaceAll(template, p.Name, m)
	}
	return template, markers, nil
}

// tracer walks the marked template, the rendered file and the file on disk
// together.
type tracer struct {
	markers map[string]string
	edits   []TracedEdit
	literal bool
}

func (tr *tracer) literalEdit(path []string, removed bool) {
	tr.literal = true
	tr.edits = append(tr.edits, TracedEdit{Path: dotted(path), Removed: removed})
}

// walk returns the template node t with the literal edits of k merged in.
func (tr *tracer) walk(t, d, k any, path []string) any {
	if reflect.DeepEqual(d, k) {
		return t
	}
	child := func(key string) []string { return append(path[:len(path):len(path)], key) }
	switch tt := t.(type) {
	case map[string]any:
		dm, ok1 := d.(map[string]any)
		km, ok2 := k.(map[string]any)
		if !ok1 || !ok2 {
			break
		}
		out := map[string]any{}
		for key, tv := range tt {
			kv, present := km[key]
			if !present {
				tr.literalEdit(child(key), true)
				continue
			}
			out[key] = tr.walk(tv, dm[key], kv, child(key))
		}
		for key, kv := range km {
			if _, ok := tt[key]; !ok {
				tr.literalEdit(child(key), false)
				out[key] = kv
			}
		}
		return out
	case []any:
		da, ok1 := d.([]any)
		ka, ok2 := k.([]any)
		if !ok1 || !ok2 || len(da) != len(tt) {
			break
		}
		return tr.walkList(tt, da, ka, path)
	default:
		if ph, value, ok := tr.placeholderValue(t, k); ok {
			tr.edits = append(tr.edits, TracedEdit{Path: dotted(path), Placeholder: ph, Value: value})
			return t
		}
	}
	tr.literalEdit(path, false)
	return k
}

// walkList walks a list. Lists of the same length are walked element by
// element; otherwise elements are paired by their "type" in order (a CNI
// plugin list), so that a plugin added or removed is one edit, not a shift
// of every plugin after it.
func (tr *tracer) walkList(t, d, k []any, path []string) []any {
	child := func(i int) []string { return append(path[:len(path):len(path)], strconv.Itoa(i)) }
	pair := make([]int, len(k)) // pair[j] is the element of d that k[j] is, or -1
	if len(d) == len(k) {
		for j := range k {
			pair[j] = j
		}
	} else {
		next := 0
		for j := range k {
			pair[j] = -1
			for i := next; i < len(d); i++ {
				if typeOf(d[i]) != "" && typeOf(d[i]) == typeOf(k[j]) {
					pair[j], next = i, i+1
					break
				}
			}
		}
	}
	paired := map[int]bool{}
	out := make([]any, 0, len(k))
	for j, i := range pair {
		if i < 0 {
			tr.literalEdit(child(j), false)
			out = append(out, k[j])
			continue
		}
		paired[i] = true
		out = append(out, tr.walk(t[i], d[i], k[j], child(j)))
	}
	for i := range d {
		if !paired[i] {
			tr.literalEdit(child(i), true)
		}
	}
	return out
}

// typeOf is an object's "type", "" for anything else.
func typeOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["type"].(string)
	return s
}

// placeholderValue reports whether the template leaf t is filled by one
// placeholder, with fixed text around it that the edited leaf k keeps, and
// what the placeholder would have to be for k.
func (tr *tracer) placeholderValue(t, k any) (placeholder, value string, ok bool) {
	text := leafText(t)
	if text == "" {
		return "", "", false
	}
	var found string
	for m := range tr.markers {
		if strings.Contains(text, m) {
			if found != "" {
				return "", "", false // two placeholders: which one changed is a guess
			}
			found = m
		}
	}
	if found == "" {
		return "", "", false
	}
	_, isNumber := t.(json.Number)
	kText := leafText(k)
	if _, kIsString := k.(string); !isNumber && !kIsString {
		return "", "", false
	}
	if isNumber && kText == "" {
		return "", "", false
	}
	before, after, _ := strings.Cut(text, found)
	if !strings.HasPrefix(kText, before) || !strings.HasSuffix(kText[len(before):], after) {
		return "", "", false
	}
	return tr.markers[found], kText[len(before) : len(kText)-len(after)], true
}

// leafText is a leaf's text: a string's value, a number's digits, a bool.
func leafText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func dotted(path []string) string {
	if len(path) == 0 {
		return "."
	}
	return strings.Join(path, ".")
}

// Chained is the plugin types other agents append to Calico's list, as the
// comparison sets them aside.
func (d *Dir) Chained() []string { return d.chainedTypes() }
