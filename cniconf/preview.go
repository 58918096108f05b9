package cniconf

import (
	"bytes"
	"fmt"
)

// Preview renders the files as BuildDesired does, for a comparison and never
// for a write: a conf that a runtime would not load (ValidateConf) is
// returned all the same, with the reason in unloadable, so that plan can say
// what a proposed change would do and that runtimes would refuse it. err is
// a render that gives no file at all.
func Preview(in *Inputs, confName string) (d *Desired, unloadable, err error) {
	conf, err := RenderTemplate(in)
	if err != nil {
		return nil, nil, err
	}
	name, err := ConfName(confName, conf)
	if err != nil {
		return nil, nil, err
	}
	if err := ValidateConf(name, conf); err != nil {
		unloadable = fmt.Errorf("rendered %s: %w", name, err)
	}
	fields, err := learnTokenFields(in)
	if err != nil {
		return nil, nil, err
	}
	d = &Desired{Token: in.Token, Facts: in.facts(), Files: []*File{{
		Name: name, Kind: KindConf, Content: conf, Mode: FileMode,
		token: in.Token, tokenFields: fields, parse: parseConf,
	}}}
	if in.usesKubeconfig() {
		k, err := in.DesiredKubeconfig()
		if err != nil {
			return nil, nil, err
		}
		d.Files = append(d.Files, &File{
			Name: in.kubeconfigName(), Kind: KindKubeconfig, Content: k.Bytes(), Mode: FileMode,
			token: in.Token, parse: parseKubeconfigSnapshot,
		})
	}
	return d, unloadable, nil
}

// ChangedBetween lists the paths at which two renders of one file differ
// in meaning, as drift names them (plugins.0.mtu), the token masked: what
// replacing a by b would change.
func ChangedBetween(a, b *File) ([]string, error) {
	if a.token == b.token && bytes.Equal(a.Content, b.Content) {
		return nil, nil // the same bytes: nothing to parse (most files of a plan)
	}
	sa, err := a.parse(a.Content, a.tokenFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.Name, err)
	}
	sb, err := b.parse(b.Content, b.tokenFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name, err)
	}
	return ChangedPaths(normalize(sa.meaning), normalize(sb.meaning)), nil
}

// ProposedDiff is a unified diff of a file from its render now to its
// render with a proposed change, tokens and the CA redacted as in FileDiff.
func ProposedDiff(path string, now, proposed []byte, tokens ...string) string {
	return diff(path+" (now)", path+" (proposed)", redactCA(now), redactCA(proposed), tokens)
}
