package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultChainedTypes are the plugin types that other node agents append to
// Calico's conflist and keep there: istio-cni's installer and linkerd-cni's
// each remove their own entry from the list and append it again at the end
// (cniconf/testdata/chained/README.md says where that was read). They are set
// aside when the file is compared and kept when it is rewritten, so the
// agent and those installers never undo each other's work. Dir.ChainedTypes
// replaces this list.
var DefaultChainedTypes = []string{"istio-cni", "linkerd-cni"}

// DefaultMetaTypes are the plugin types of a config that sorts before
// Calico's and delegates to it: multus ("multus" for the thin plugin,
// "multus-shim" for the thick one) writes 00-multus.conf or
// 00-multus.conflist, whose network is the first other config in the
// directory. Such a config does not make Calico's Shadowed. Dir.MetaTypes
// replaces this list.
var DefaultMetaTypes = []string{"multus", "multus-shim"}

func (d *Dir) chainedTypes() []string {
	if d.ChainedTypes == nil {
		return DefaultChainedTypes
	}
	return d.ChainedTypes
}

func (d *Dir) metaTypes() []string {
	if d.MetaTypes == nil {
		return DefaultMetaTypes
	}
	return d.MetaTypes
}

// chainedView is f as this directory compares it. For a conflist it parses
// with the plugins of the chained types set aside, in the comparison, the
// record's and the token fields alike (their paths count the rendered
// plugins only, wherever a chained plugin sits). A type the rendered list
// holds itself is Calico's own and is never set aside. Any other file is
// f itself.
func (d *Dir) chainedView(f *File) *File {
	if f.Kind != KindConf {
		return f
	}
	if _, _, _, ok := pluginsEnd(f.Content); !ok {
		return f // not a list: nothing is ever chained onto it here
	}
	rendered := map[string]bool{}
	for _, p := range pluginsOf(f.Content) {
		rendered[pluginType(p)] = true
	}
	var aside []string
	for _, t := range d.chainedTypes() {
		if t != "" && !rendered[t] && !slices.Contains(aside, t) {
			aside = append(aside, t)
		}
	}
	if len(aside) == 0 {
		return f
	}
	v := *f
	v.aside = strings.Join(aside, ",")
	parse := f.parse
	v.parse = func(data []byte, fields []TokenField) (snapshot, error) {
		rest, chained := setAside(data, aside)
		snap, err := parse(rest, fields)
		snap.chained = chained
		return snap, err
	}
	return &v
}

// setAside takes the plugins of the given types out of a conflist's
// "plugins", in their order. Data that is not such a list, or holds none of
// them, is returned as it is, so a parse of it fails or succeeds as before.
func setAside(data []byte, types []string) ([]byte, []any) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	if dec.Decode(&doc) != nil || dec.More() {
		return data, nil
	}
	plugins, ok := doc["plugins"].([]any)
	if !ok {
		return data, nil
	}
	var rest, chained []any
	for _, p := range plugins {
		if slices.Contains(types, pluginType(p)) {
			chained = append(chained, p)
		} else {
			rest = append(rest, p)
		}
	}
	if len(chained) == 0 {
		return data, nil
	}
	if rest == nil {
		rest = []any{}
	}
	doc["plugins"] = rest
	out, err := json.Marshal(doc)
	if err != nil {
		return data, nil
	}
	return out, chained
}

// pluginType is the "type" of a plugin entry ("" for anything else).
func pluginType(p any) string {
	m, _ := p.(map[string]any)
	t, _ := m["type"].(string)
	return t
}

// pluginsOf is a conflist's plugin entries (nil for anything else).
func pluginsOf(conf []byte) []any {
	var doc struct {
		Plugins []any `json:"plugins"`
	}
	if json.Unmarshal(conf, &doc) != nil {
		return nil
	}
	return doc.Plugins
}

// chainedNames are the types of the chained plugins found, each once, in
// their order: what FileStatus.Chained lists.
func chainedNames(chained []any) []string {
	var out []string
	for _, p := range chained {
		if t := pluginType(p); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// keepChained is content with the chained plugins found on disk appended
// after the rendered ones, where their installers put them. content is the
// rendered conflist (chainedView found its list), so the append cannot
// fail; if it did, content is returned as it is.
func (j judgement) keepChained(content []byte) []byte {
	if len(j.chained) == 0 {
		return content
	}
	out, err := appendPlugins(content, j.chained)
	if err != nil {
		return content
	}
	return out
}

// appendPlugins inserts plugins after the last entry of a conflist's
// top-level "plugins", indented as its first entry is; every byte of the
// rendered content stays as it is.
func appendPlugins(conf []byte, plugins []any) ([]byte, error) {
	end, lead, n, ok := pluginsEnd(conf)
	if !ok {
		return nil, errNoPluginList
	}
	indent := ""
	if i := strings.LastIndexByte(lead, '\n'); i >= 0 {
		indent = lead[i+1:]
	}
	var ins bytes.Buffer
	for i, p := range plugins {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if strings.Contains(lead, "\n") {
			enc.SetIndent(indent, "  ")
		}
		if err := enc.Encode(p); err != nil {
			return nil, err
		}
		if n > 0 || i > 0 {
			ins.WriteByte(',')
		}
		ins.WriteString(lead)
		ins.Write(bytes.TrimRight(buf.Bytes(), "\n"))
	}
	out := make([]byte, 0, len(conf)+ins.Len())
	out = append(out, conf[:end]...)
	out = append(out, ins.Bytes()...)
	return append(out, conf[end:]...), nil
}

var errNoPluginList = errors.New("not a conflist with a plugins list")

// pluginsEnd walks a conflist's tokens to its top-level "plugins" list (the
// last, as a JSON decoder reads duplicates) and returns the offset just
// after its last entry (after the '[' when it is empty), the white space
// before its first entry, and how many entries it has.
func pluginsEnd(conf []byte) (end int, lead string, n int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(conf))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, "", 0, false
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0, "", 0, false
		}
		if key != "plugins" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return 0, "", 0, false
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return 0, "", 0, false
		}
		open := int(dec.InputOffset())
		end, n, lead = open, 0, ""
		for dec.More() {
			var entry json.RawMessage
			if dec.Decode(&entry) != nil {
				return 0, "", 0, false
			}
			if n == 0 {
				rest := conf[open:]
				lead = string(rest[:len(rest)-len(bytes.TrimLeft(rest, " \t\r\n"))])
			}
			end, n = int(dec.InputOffset()), n+1
		}
		if _, err := dec.Token(); err != nil {
			return 0, "", 0, false
		}
		ok = true
	}
	return end, lead, n, ok
}

// loadedFirst is the config whose network a runtime ends up using: the
// first of files (sorted by name) that is not a meta-plugin's, since a
// meta-plugin such as multus delegates to the first other config in the
// directory. "" when every file is a meta-plugin's.
func (d *Dir) loadedFirst(files []string) string {
	for _, f := range files {
		if !d.isMeta(f) {
			return f
		}
	}
	return ""
}

// isMeta reports whether the config at path is a meta-plugin's: a single
// config (.conf, .json) of one of the meta types, or a conflist whose first
// plugin is one. It is read as a managed file is (no link followed, 1 MiB at
// most); what cannot be read is not a meta-plugin's, so it still shadows.
func (d *Dir) isMeta(path string) bool {
	types := d.metaTypes()
	if len(types) == 0 {
		return false
	}
	od, err := readManaged(path)
	if err != nil || od.data == nil {
		return false
	}
	var t string
	if filepath.Ext(path) == ".conflist" {
		if p := pluginsOf(od.data); len(p) > 0 {
			t = pluginType(p[0])
		}
	} else {
		var conf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(od.data, &conf) == nil {
			t = conf.Type
		}
	}
	return t != "" && slices.Contains(types, t)
}
