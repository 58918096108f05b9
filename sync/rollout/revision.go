package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Inputs are the ConfigMap-borne inputs of the node's files: what a
// revision is a digest of. Nothing of the node (its name, its API address,
// its token) and nothing of the objects' bookkeeping (resourceVersions) is
// in it, so that every node computes the same name for the same change.
type Inputs struct {
	// Template is the CNI network config template, when a ConfigMap key
	// gives it; "" when it comes from elsewhere (a literal of the
	// DaemonSet, a file of the agent's).
	Template string
	// Keys are the other ConfigMap keys the rendering uses, by
	// "namespace/name/key", with their values.
	Keys map[string]string
}

// Revision names the inputs: "sha256:" and the first 16 hex digits of the
// digest of the template and the keys. No ConfigMap-borne input at all is
// no revision ("").
func Revision(in Inputs) string {
	if in.Template == "" && len(in.Keys) == 0 {
		return ""
	}
	h := sha256.New()
	// Each part is length-prefixed, so that no two different inputs give
	// the same stream.
	part := func(s string) {
		var n [8]byte
		l := uint64(len(s))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(s))
	}
	part("template")
	part(in.Template)
	keys := make([]string, 0, len(in.Keys))
	for k := range in.Keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		part(k)
		part(in.Keys[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// StartOf is when a revision started: the time the API server recorded
// the latest update of the ConfigMaps it comes from (the latest
// metadata.managedFields time), else the latest creationTimestamp. Every
// node reads the same objects, so every node computes the same start. Zero
// when no ConfigMap says.
func StartOf(cms []metav1.ObjectMeta) time.Time {
	var start time.Time
	for _, m := range cms {
		t := m.CreationTimestamp.Time
		for _, f := range m.ManagedFields {
			if f.Time != nil && f.Time.After(t) {
				t = f.Time.Time
			}
		}
		if t.After(start) {
			start = t
		}
	}
	return start
}
