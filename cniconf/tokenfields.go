package cniconf

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// TokenField is a place in a JSON document where the token sits, with the
// text the template puts around it in the same string.
type TokenField struct {
	Path   string `json:"path"`
	Prefix string `json:"prefix,omitempty"`
	Suffix string `json:"suffix,omitempty"`
}

// tokenMask stands for a token in masked documents and records.
const tokenMask = "<token>"

// tokenSentinel is rendered in place of the token to find where it lands. It
// is JSON-safe and cannot appear in a Calico template by chance.
const tokenSentinel = "calico-cni-sync-token-sentinel-7f3a9c"

// snapshot is what a file means with its tokens masked, and the tokens found.
type snapshot struct {
	meaning any
	tokens  []string
	// chained are the chained plugins set aside (see chainedView).
	chained []any
}

// learnTokenFields renders the template with a sentinel token and records
// every string the sentinel lands in.
func learnTokenFields(in *Inputs) ([]TokenField, error) {
	if !strings.Contains(in.Template, TokenPlaceholder) {
		return nil, nil
	}
	out, err := in.render(tokenSentinel)
	if err != nil {
		// The real token rendered, a string did not: the placeholder
		// sits outside the quotes.
		return nil, fmt.Errorf("the template names %s outside any JSON string", TokenPlaceholder)
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("rendered cni_network_config is not JSON: %w", err)
	}
	var fields []TokenField
	walkStrings(doc, nil, func(path []string, s string) {
		if i := strings.Index(s, tokenSentinel); i >= 0 {
			fields = append(fields, TokenField{Path: strings.Join(path, "."), Prefix: s[:i], Suffix: s[i+len(tokenSentinel):]})
		}
	})
	if len(fields) == 0 {
		return nil, fmt.Errorf("the template names %s outside any JSON string", TokenPlaceholder)
	}
	return fields, nil
}

func walkStrings(v any, path []string, fn func([]string, string)) {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkStrings(t[k], append(path[:len(path):len(path)], k), fn)
		}
	case []any:
		for i, e := range t {
			walkStrings(e, append(path[:len(path):len(path)], strconv.Itoa(i)), fn)
		}
	case string:
		fn(path, t)
	}
}

// lookup follows a dotted path; the parent and key are returned so the value
// can be replaced.
func lookup(doc any, path string) (parent any, key string, val any, ok bool) {
	cur := doc
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		parent, key = cur, seg
		switch t := cur.(type) {
		case map[string]any:
			cur, ok = t[seg]
		case []any:
			n, err := strconv.Atoi(seg)
			ok = err == nil && n >= 0 && n < len(t)
			if ok {
				cur = t[n]
			}
		default:
			ok = false
		}
		if !ok {
			return nil, "", nil, false
		}
		if i == len(segs)-1 {
			return parent, key, cur, true
		}
	}
	return nil, "", nil, false
}

func replaceAt(parent any, key string, v any) {
	switch t := parent.(type) {
	case map[string]any:
		t[key] = v
	case []any:
		n, _ := strconv.Atoi(key)
		t[n] = v
	}
}
