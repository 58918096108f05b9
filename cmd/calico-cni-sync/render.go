package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// renderedFile is one file of render -o json.
type renderedFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// runRender prints what install-cni would write now, from the same inputs
// as drift, and writes nothing.
func runRender(ctx context.Context, o *Options, stdout io.Writer) (int, error) {
	r, err := oneShotReconciler(o, role{})
	if err != nil {
		return exitError, err
	}
	want, tok, err := r.Desired(ctx)
	if err != nil {
		// Redacted here, where the token is known: the message may quote it.
		return exitError, errors.New(cniconf.Redact(err.Error(), tok.Value))
	}
	files := make([]renderedFile, 0, len(want.Files))
	for _, f := range want.Files {
		content := string(f.Content)
		if !o.ShowToken {
			content = cniconf.Redact(content, want.Token)
		}
		files = append(files, renderedFile{Path: filepath.Join(o.CNINetDir, f.Name), Content: content})
	}
	if o.Output == "json" {
		if err := printJSON(stdout, map[string]any{"files": files}); err != nil {
			return exitError, err
		}
		return exitOK, nil
	}
	for _, f := range files {
		// The files end without a newline, as install-cni writes them; the
		// next header must start a line. -o json has the exact bytes.
		if !strings.HasSuffix(f.Content, "\n") {
			f.Content += "\n"
		}
		_, _ = fmt.Fprintf(stdout, "# %s\n%s", f.Path, f.Content)
	}
	return exitOK, nil
}
