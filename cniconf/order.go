package cniconf

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// keyOrder is the order of the keys of every object in a JSON document,
// found by reading it token by token (a Go map forgets it).
type keyOrder struct {
	keys     []string
	children map[string]*keyOrder // by key, or by index for a list
}

// orderOf reads the key order of data; nil when data is not JSON.
func orderOf(data []byte) *keyOrder {
	dec := json.NewDecoder(bytes.NewReader(data))
	o, err := readOrder(dec)
	if err != nil {
		return nil
	}
	return o
}

func readOrder(dec *json.Decoder) (*keyOrder, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return nil, nil // a scalar has no keys
	}
	o := &keyOrder{children: map[string]*keyOrder{}}
	for i := 0; dec.More(); i++ {
		key := itoa(i)
		if d == '{' {
			t, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ = t.(string)
			o.keys = append(o.keys, key)
		}
		child, err := readOrder(dec)
		if err != nil {
			return nil, err
		}
		o.children[key] = child
	}
	_, err = dec.Token() // the closing delimiter
	return o, err
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// encodeOrdered writes v as indented JSON with every object's keys in the
// order o gives (keys o does not know last, sorted), without HTML escaping.
func encodeOrdered(v any, o *keyOrder) string {
	var b strings.Builder
	writeOrdered(&b, v, o, "")
	return b.String()
}

func writeOrdered(b *strings.Builder, v any, o *keyOrder, indent string) {
	child := func(key string) *keyOrder {
		if o == nil {
			return nil
		}
		return o.children[key]
	}
	inner := indent + "  "
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range orderedKeys(x, o) {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.WriteString(inner)
			writeScalar(b, k)
			b.WriteString(": ")
			writeOrdered(b, x[k], child(k), inner)
		}
		b.WriteString("\n" + indent + "}")
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.WriteString(inner)
			writeOrdered(b, e, child(itoa(i)), inner)
		}
		b.WriteString("\n" + indent + "]")
	default:
		writeScalar(b, v)
	}
}

func orderedKeys(m map[string]any, o *keyOrder) []string {
	seen := map[string]bool{}
	var out []string
	if o != nil {
		for _, k := range o.keys {
			if _, ok := m[k]; ok && !seen[k] {
				out = append(out, k)
				seen[k] = true
			}
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func writeScalar(b *strings.Builder, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	b.WriteString(strings.TrimSuffix(buf.String(), "\n"))
}
