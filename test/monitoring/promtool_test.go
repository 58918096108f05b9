// Package monitoring tests manifests/monitoring: the PrometheusRule's rules
// are valid for Prometheus (promtool check rules), each alert fires and stays
// quiet where its unit tests say (promtool test rules, testdata), and each is
// tested both ways, documented in docs/RUNBOOK.md and scraped through a
// PodMonitor that selects the agent of manifests/base.
//
// promtool comes from Debian's prometheus package, not from a Go module: the
// Prometheus module stays out of the product's dependency graph. A machine
// without it fails these tests; it does not skip them.
package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	monitoringDir = "../../manifests/monitoring"
	unitTests     = "testdata/alerts.test.yaml"
	// rulesFile is the name alerts.test.yaml's rule_files gives the rules:
	// promtool resolves it next to the test file.
	rulesFile = "rules.yaml"
)

// promtool is the path of promtool, or a failure that says where to get it.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package "+
			"(apt-get install prometheus, as root; only promtool is used, the service need not run)", err)
	}
	return path
}

// object is one Kubernetes object of the kustomization, as read.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw map[string]any
}

// objects reads every resource manifests/monitoring/kustomization.yaml
// lists, so a file left out of the kustomization is a file not tested.
func objects(t *testing.T) []object {
	t.Helper()
	var k struct {
		Resources []string `json:"resources"`
	}
	readYAML(t, filepath.Join(monitoringDir, "kustomization.yaml"), &k)
	if len(k.Resources) == 0 {
		t.Fatalf("%s/kustomization.yaml lists no resources", monitoringDir)
	}
	var objs []object
	for _, r := range k.Resources {
		path := filepath.Join(monitoringDir, r)
		var o object
		readYAML(t, path, &o)
		readYAML(t, path, &o.raw)
		objs = append(objs, o)
	}
	return objs
}

// only is the one object of a kind, or a failure.
func only(t *testing.T, kind string) object {
	t.Helper()
	var found []object
	for _, o := range objects(t) {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("manifests/monitoring has %d %s objects, want 1", len(found), kind)
	}
	return found[0]
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
}

// writeRules writes the PrometheusRule's spec, as is, as a plain rules file
// into dir: the groups the Prometheus Operator hands to Prometheus. The spec
// is copied whole rather than through a typed view, so a field Prometheus
// does not know (an operator-only field, a typo) reaches promtool and fails.
func writeRules(t *testing.T, dir string) string {
	t.Helper()
	rule := only(t, "PrometheusRule")
	spec, ok := rule.raw["spec"]
	if !ok {
		t.Fatalf("PrometheusRule %s has no spec", rule.Metadata.Name)
	}
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, rulesFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runPromtool runs promtool in dir and returns its combined output, failing
// the test with that output when promtool fails.
func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s failed (%v):\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPromtoolCheckRules: Prometheus would load the rules: valid PromQL,
// durations, templates, no unknown field.
func TestPromtoolCheckRules(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir)
	out := runPromtool(t, dir, "check", "rules", rulesFile)
	t.Logf("promtool check rules:\n%s", out)
	if n := len(alerts(t)); !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", n)) {
		t.Errorf("promtool did not find the %d rules of the PrometheusRule:\n%s", n, out)
	}
}

// TestPromtoolTestRules runs the alerts' unit tests against the rules, both
// copied into one directory as alerts.test.yaml's rule_files expects.
func TestPromtoolTestRules(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir)
	tests, err := os.ReadFile(unitTests)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(unitTests)
	if err := os.WriteFile(filepath.Join(dir, name), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, dir, "test", "rules", name)
	t.Logf("promtool test rules:\n%s", out)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}
