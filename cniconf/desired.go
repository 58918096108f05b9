package cniconf

import (
	"bytes"
	"os"
)

// FileMode is the mode of every file written. Seed-era confs embed the
// token; the runtimes and the CNI plugin that read these files run as root,
// so nothing is lost by making every one of them readable by root alone.
const FileMode os.FileMode = 0o600

// Kind tells the two managed files apart.
type Kind string

// The managed files.
const (
	KindConf       Kind = "conf"
	KindKubeconfig Kind = "kubeconfig"
)

// File is one file as it should be on disk. Content holds the token; it is
// never printed, only written.
type File struct {
	Name    string
	Kind    Kind
	Content []byte
	Mode    os.FileMode

	token       string
	tokenFields []TokenField
	parse       func([]byte, []TokenField) (snapshot, error)
	judge       TokenJudge
	// aside are the chained plugin types parse sets aside (chainedView).
	aside string
	// caRepair says why the CA a kubeconfig on disk holds is to be
	// replaced by this file's ("" : it is not): the CA on disk does not
	// verify the API server, and this file's does (RepairCA).
	caRepair string
}

// TokenJudge says whether a token found in a file is current, and if not,
// why. It is the token policy: nil means only the desired token itself is
// current (policy own); under policy guard any healthy token is, whichever
// process wrote it.
type TokenJudge func(token string) (current bool, why string)

// tokenCurrent judges one token found on disk.
func (f *File) tokenCurrent(tok string) (bool, string) {
	if tok == f.token {
		return true, ""
	}
	if tok == "" {
		return false, "no token"
	}
	if f.judge == nil {
		return false, "not the source's token"
	}
	return f.judge(tok)
}

// withToken is the desired content carrying tok instead of the source's
// token: under policy guard a file rewritten for another reason keeps the
// healthy token it holds, so the agent never replaces calico-node's token
// with its own.
func (f *File) withToken(tok string) []byte {
	if tok == "" || tok == f.token || !f.HoldsToken() {
		return f.Content
	}
	return bytes.ReplaceAll(f.Content, []byte(f.token), []byte(tok))
}

// HoldsToken reports whether the file carries the token.
func (f *File) HoldsToken() bool {
	return f.token != "" && (f.Kind == KindKubeconfig || len(f.tokenFields) > 0)
}

// tokenPaths are the paths that hold the token, which a StaleToken file
// reports as changed.
func (f *File) tokenPaths() []string {
	if f.Kind == KindKubeconfig {
		return []string{"users.0.user.token"}
	}
	out := make([]string, 0, len(f.tokenFields))
	for _, tf := range f.tokenFields {
		out = append(out, tf.Path)
	}
	return out
}

// Desired is the set of files the inputs call for.
type Desired struct {
	Files []*File
	// Token is kept to redact it from anything shown.
	Token string
	// Facts are the values rendered from a flag or this process's
	// environment rather than from the cluster, kept in the record of each
	// write.
	Facts map[string]string
	// Revision names the ConfigMap-borne inputs the files are rendered
	// from, kept in the record of each write: a later pass tells a file
	// that is Outdated because a ConfigMap changed (a revision to roll
	// out) from one Outdated for another reason. "" when not known.
	Revision string
}

// SetTokenJudge installs the token policy for every file (nil: own).
func (d *Desired) SetTokenJudge(j TokenJudge) {
	for _, f := range d.Files {
		f.judge = j
	}
}

// RepairCA marks the kubeconfig's CA on disk as unfit: it does not verify
// the server the file names, and the desired file's CA does (the caller
// has checked both with a handshake). A file whose CA is the only
// difference is then StaleToken, with why as its message, and rewritten
// keeping its token; a hand-edited one gets the CA merged into the edit, as
// a stale token is. Without it, a CA that differs is a difference like any
// other (Outdated or Drifted).
func (d *Desired) RepairCA(why string) {
	for _, f := range d.Files {
		if f.Kind == KindKubeconfig {
			f.caRepair = why
		}
	}
}

// Conf is the CNI config among the desired files.
func (d *Desired) Conf() *File {
	for _, f := range d.Files {
		if f.Kind == KindConf {
			return f
		}
	}
	return nil
}

// BuildDesired renders the template and, when the template refers to it, the
// kubeconfig, names the conf file by its content (or checks confName against
// it) and validates it as a runtime would load it. Any error leaves the node's
// files alone: nothing has been written yet.
func BuildDesired(in *Inputs, confName string) (*Desired, error) {
	d, unloadable, err := Preview(in, confName)
	if err != nil {
		return nil, err
	}
	if unloadable != nil {
		return nil, unloadable
	}
	return d, nil
}
