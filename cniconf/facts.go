package cniconf

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Facts are the values of a render that came from the node rather than the
// cluster: the node name, the API server's address and the MTU, each when a
// flag or this process's environment gave it. A value install-cni's
// environment takes from the cluster (a ConfigMap key such as calico-config's
// veth_mtu or kubernetes-services-endpoint's address, a literal on the
// DaemonSet) is none: a repair must follow its changes. A hand repair run from another shell (no --node-name, an
// admin's environment) would change them silently; the record keeps them
// so that the repair can refuse instead, and so that the node name can be
// recalled.
const (
	FactNodeName  = "nodeName"
	FactAPIServer = "apiServer"
	FactMTU       = "mtu"
)

// RecordedFacts are the facts of the last write in netDir's records: the
// union over its files, the newest record winning. No record is an empty
// map.
func RecordedFacts(stateDir, netDir string) map[string]string {
	out := map[string]string{}
	if stateDir == "" {
		return out
	}
	entries, err := os.ReadDir(recordDir(stateDir, netDir))
	if err != nil {
		return out
	}
	var recs []*Record
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		if r, err := LoadRecord(stateDir, netDir, name); err == nil && r != nil && r.Written != nil {
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Written.At.Before(recs[j].Written.At) })
	for _, r := range recs {
		for k, v := range r.Facts {
			out[k] = v
		}
	}
	return out
}

// FactChange is a fact a write would change.
type FactChange struct {
	Fact, Recorded, Now string
}

// ChangedFacts compares the facts a render calls for with the recorded
// ones; a fact missing on either side is no change.
func ChangedFacts(recorded, now map[string]string) []FactChange {
	var out []FactChange
	for k, v := range now {
		if old, ok := recorded[k]; ok && old != v {
			out = append(out, FactChange{Fact: k, Recorded: old, Now: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fact < out[j].Fact })
	return out
}

// String names the change and where the value comes from.
func (c FactChange) String() string {
	from := map[string]string{
		FactNodeName:  "--node-name, else $KUBERNETES_NODE_NAME or $NODE_NAME in this command's environment, else the hostname",
		FactAPIServer: "$KUBERNETES_SERVICE_HOST and $KUBERNETES_SERVICE_PORT in this command's environment",
		FactMTU:       "$CNI_MTU in this command's environment",
	}[c.Fact]
	return fmt.Sprintf("%s would change from %q (recorded at the last write in this directory) to %q (from %s)", c.Fact, c.Recorded, c.Now, from)
}
