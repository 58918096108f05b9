package status

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/reconcile"
)

// WriteStatusFile writes the report as drift -o json prints it, atomically
// and mode 0600: it names files and tokens' digests, and a token that is
// not a JWT might slip past redaction in a message; root reads it. An empty
// path writes nothing.
func WriteStatusFile(path string, rep *reconcile.Report) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create the --status-file directory: %w", err)
	}
	if _, err := cniconf.WriteAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write --status-file: %w", err)
	}
	return nil
}
