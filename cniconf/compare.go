package cniconf

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// parseConf reads a CNI config and masks the token in the given fields. A
// field whose text around the token differs from the template is left as it
// is, so that difference shows as an edit.
func parseConf(data []byte, fields []TokenField) (snapshot, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return snapshot{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if dec.More() {
		return snapshot{}, errors.New("not valid JSON: data after the top-level value")
	}
	if _, ok := doc.(map[string]any); !ok {
		return snapshot{}, errors.New("not a JSON object")
	}
	snap := snapshot{meaning: doc}
	for _, f := range fields {
		parent, key, v, ok := lookup(doc, f.Path)
		s, isString := v.(string)
		if !ok || !isString || !strings.HasPrefix(s, f.Prefix) || !strings.HasSuffix(s[len(f.Prefix):], f.Suffix) {
			snap.tokens = append(snap.tokens, "")
			continue
		}
		snap.tokens = append(snap.tokens, s[len(f.Prefix):len(s)-len(f.Suffix)])
		replaceAt(parent, key, f.Prefix+tokenMask+f.Suffix)
	}
	return snap, nil
}

// normalize round-trips a value through JSON so that documents built in
// memory and documents read from records compare equal.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

// ChangedPaths lists the dotted paths at which two documents differ, sorted.
func ChangedPaths(a, b any) []string {
	var out []string
	diffPaths(a, b, nil, &out)
	sort.Strings(out)
	return out
}

func diffPaths(a, b any, path []string, out *[]string) {
	name := func(k string) []string { return append(path[:len(path):len(path)], k) }
	switch ta := a.(type) {
	case map[string]any:
		if tb, ok := b.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range ta {
				keys[k] = true
			}
			for k := range tb {
				keys[k] = true
			}
			for k := range keys {
				diffPaths(ta[k], tb[k], name(k), out)
			}
			return
		}
	case []any:
		if tb, ok := b.([]any); ok {
			for i := 0; i < max(len(ta), len(tb)); i++ {
				var x, y any
				if i < len(ta) {
					x = ta[i]
				}
				if i < len(tb) {
					y = tb[i]
				}
				diffPaths(x, y, name(strconv.Itoa(i)), out)
			}
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		p := strings.Join(path, ".")
		if p == "" {
			p = "."
		}
		*out = append(*out, p)
	}
}

// judgement is what classify concludes about one file's content.
type judgement struct {
	state      State
	changed    []string
	tokenStale bool
	reason     string
	// keepToken is the healthy token the file holds, kept when the file
	// is rewritten for another reason.
	keepToken string
	// modeWrong: the file holds a token and is open to more than the
	// agent's user. It is reported as Drifted (path "mode") above the
	// content's own state, and put right under either policy.
	modeWrong bool
	// chained are the chained plugins the file holds: not compared, kept
	// when the file is rewritten (keepChained).
	chained []any
	// caStale: the kubeconfig's CA is to be replaced (File.caRepair).
	caStale bool
}

// reported is the state shown for the file: the first that applies.
func (j judgement) reported() (State, []string) {
	if !j.modeWrong {
		return j.state, j.changed
	}
	changed := append(slices.Clone(j.changed), "mode")
	if j.state.Severity() < Drifted.Severity() {
		return j.state, changed
	}
	return Drifted, changed
}

// classify compares a file on disk with the desired file and the record of
// what was last written: the three-way comparison that tells a rotated token
// (StaleToken) from a changed ConfigMap (Outdated: the file is still as
// written) from a person's edit (Drifted).
func classify(disk []byte, exists bool, want *File, rec *Record) judgement {
	if !exists {
		return judgement{state: Missing}
	}
	got, err := want.parse(disk, want.tokenFields)
	if err != nil {
		return judgement{state: Corrupt, reason: err.Error()}
	}
	wantSnap, err := want.parse(want.Content, want.tokenFields)
	if err != nil {
		return judgement{state: Error, reason: err.Error()}
	}
	stale, why := tokensStale(got.tokens, want)
	gotMeaning := normalize(got.meaning)
	changed := ChangedPaths(gotMeaning, normalize(wantSnap.meaning))
	keep := ""
	if !stale {
		keep = firstToken(got.tokens)
	}
	if caPath, ok := staleCA(changed, want); ok {
		// The CA alone is a credential that does not work, not an edit.
		rest := slices.DeleteFunc(slices.Clone(changed), func(p string) bool { return p == caPath })
		if len(rest) == 0 {
			paths := []string{caPath}
			if stale {
				paths = append(paths, want.tokenPaths()...)
			}
			return judgement{state: StaleToken, tokenStale: stale, caStale: true, changed: paths, keepToken: keep,
				reason: joinMessage(want.caRepair, why), chained: got.chained}
		}
		if !rec.matches(disk, want.parse) {
			return judgement{state: Drifted, changed: changed, tokenStale: stale, caStale: true, keepToken: keep,
				reason: joinMessage(want.caRepair, why), chained: got.chained}
		}
	}
	switch {
	case len(changed) == 0 && stale:
		return judgement{state: StaleToken, tokenStale: true, changed: want.tokenPaths(), reason: why, chained: got.chained}
	case len(changed) == 0:
		return judgement{state: InSync, keepToken: keep, chained: got.chained}
	case rec.matches(disk, want.parse):
		return judgement{state: Outdated, changed: changed, tokenStale: stale, keepToken: keep, reason: why, chained: got.chained}
	default:
		return judgement{state: Drifted, changed: changed, tokenStale: stale, keepToken: keep, reason: why, chained: got.chained}
	}
}

// staleCA is the changed path of a kubeconfig's CA when the file's CA is to
// be repaired (File.caRepair) and differs on disk.
func staleCA(changed []string, want *File) (string, bool) {
	if want.caRepair == "" || want.Kind != KindKubeconfig {
		return "", false
	}
	for _, p := range changed {
		if strings.HasPrefix(p, "clusters.") && strings.HasSuffix(p, ".cluster.certificate-authority-data") {
			return p, true
		}
	}
	return "", false
}

// mergeCA puts the desired kubeconfig's CA into a hand-edited one and keeps
// every other byte of the edit: the CA's base64 text is replaced where the
// file holds it. It reports false when that cannot be done (the file holds
// no CA, or holds it in another form); the file is then left as it is.
func mergeCA(disk []byte, want *File) ([]byte, bool) {
	got, err := ParseKubeconfig(disk)
	if err != nil || len(got.CAData) == 0 {
		return nil, false
	}
	wantK, err := ParseKubeconfig(want.Content)
	if err != nil || len(wantK.CAData) == 0 {
		return nil, false
	}
	old := []byte(base64.StdEncoding.EncodeToString(got.CAData))
	if bytes.Count(disk, old) != 1 {
		return nil, false
	}
	out := bytes.Replace(disk, old, []byte(base64.StdEncoding.EncodeToString(wantK.CAData)), 1)
	merged, err := ParseKubeconfig(out)
	if err != nil || !bytes.Equal(merged.CAData, wantK.CAData) || merged.Token != got.Token || merged.Server != got.Server || merged.Insecure != got.Insecure {
		return nil, false
	}
	before, err1 := want.parse(disk, want.tokenFields)
	after, err2 := want.parse(out, want.tokenFields)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	for _, p := range ChangedPaths(normalize(before.meaning), normalize(after.meaning)) {
		if !strings.HasSuffix(p, ".cluster.certificate-authority-data") {
			return nil, false
		}
	}
	return out, true
}

// tokensStale judges every token a file holds under the file's policy.
func tokensStale(tokens []string, want *File) (bool, string) {
	for _, t := range tokens {
		if ok, why := want.tokenCurrent(t); !ok {
			return true, why
		}
	}
	return false, ""
}

// firstToken is the token a file holds (the same in every field of a file
// that is not stale).
func firstToken(tokens []string) string {
	for _, t := range tokens {
		if t != "" {
			return t
		}
	}
	return ""
}

func tokensAre(tokens []string, want string) bool {
	for _, t := range tokens {
		if t != want {
			return false
		}
	}
	return true
}

// mergeToken puts the current token into a hand-edited file and keeps every
// other byte of the edit. It reports false when the edit cannot be updated
// safely (a chained plugin would change too, for one); the file is then left
// as it is.
func mergeToken(disk []byte, want *File) ([]byte, bool) {
	got, err := want.parse(disk, want.tokenFields)
	if err != nil {
		return nil, false
	}
	out := disk
	for _, old := range got.tokens {
		if old == "" || old == want.token {
			continue
		}
		out = bytes.ReplaceAll(out, []byte(old), []byte(want.token))
	}
	merged, err := want.parse(out, want.tokenFields)
	if err != nil || !tokensAre(merged.tokens, want.token) ||
		len(ChangedPaths(normalize(merged.meaning), normalize(got.meaning))) != 0 ||
		!reflect.DeepEqual(merged.chained, got.chained) {
		return nil, false
	}
	return out, true
}
