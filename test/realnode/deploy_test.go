package realnode

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// deployAgent applies the agent's manifests (a kustomization under the
// repository) as an operator does, from a kustomization of their own with
// components and args added by a patch, and returns the agent's pod once
// the DaemonSet has rolled out.
func (c *cluster) deployAgent(manifests string, components, args []string) *corev1.Pod {
	c.t.Helper()
	mine := filepath.Join(c.t.TempDir(), "my-cluster")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		c.t.Fatal(err)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(mine, filepath.Join(c.node.repo, p))
		if err != nil {
			c.t.Fatal(err)
		}
		return r
	}
	var k strings.Builder
	k.WriteString("resources: [" + rel(manifests) + "]\n")
	if len(components) > 0 {
		k.WriteString("components:\n")
		for _, comp := range components {
			k.WriteString("  - " + rel(comp) + "\n")
		}
	}
	if len(args) > 0 {
		k.WriteString("patches:\n  - target: {group: apps, version: v1, kind: DaemonSet, name: calico-cni-sync}\n    patch: |-\n")
		for _, a := range args {
			k.WriteString("      - {op: add, path: /spec/template/spec/containers/0/args/-, value: " + fmt.Sprintf("%q", a) + "}\n")
		}
	}
	if err := os.WriteFile(filepath.Join(mine, "kustomization.yaml"), []byte(k.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.mustKubectl("apply", "--server-side", "-k", mine)
	c.mustKubectl("-n", "kube-system", "rollout", "status", "daemonset/calico-cni-sync", "--timeout", "3m")
	return c.agentPod("kube-system", 3*time.Minute)
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
