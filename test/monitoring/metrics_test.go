package monitoring

import (
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// family is one metric family the agent exports: its type and label names.
type family struct {
	typ    string
	labels map[string]bool
}

// exportedFamilies are the agent's calico_cni_sync_ families, read from the
// registry sync.NewMetrics builds: a metric renamed or relabelled there
// fails the rules that still use the old name. A vector shows in a scrape
// only once it has a child, so each gets one.
func exportedFamilies(t *testing.T) map[string]family {
	t.Helper()
	m := status.NewMetrics()
	fields := reflect.ValueOf(m).Elem()
	for i := range fields.NumField() {
		f := fields.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() || f.Elem().Kind() != reflect.Struct {
			continue
		}
		if vec := f.Elem().FieldByName("MetricVec"); vec.IsValid() {
			addChild(t, fields.Type().Field(i).Name, vec.Interface().(*prometheus.MetricVec))
		}
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]family{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "calico_cni_sync_") {
			continue
		}
		fam := family{typ: strings.ToLower(mf.GetType().String()), labels: map[string]bool{}}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				fam.labels[l.GetName()] = true
			}
		}
		out[mf.GetName()] = fam
	}
	if len(out) == 0 {
		t.Fatal("sync.NewMetrics registers no calico_cni_sync_ metric")
	}
	return out
}

// addChild creates one child of a vector, finding how many label values it
// takes.
func addChild(t *testing.T, field string, vec *prometheus.MetricVec) {
	t.Helper()
	var values []string
	for range 10 {
		if _, err := vec.GetMetricWithLabelValues(values...); err == nil {
			return
		}
		values = append(values, "x")
	}
	t.Fatalf("Metrics.%s: no child with up to 10 label values", field)
}

// targetLabels are the labels a scrape through the PodMonitor adds to every
// series: the Prometheus Operator's, and the PodMonitor's own relabelings.
func targetLabels(t *testing.T) map[string]bool {
	t.Helper()
	labels := map[string]bool{"job": true, "namespace": true, "pod": true, "container": true, "endpoint": true, "instance": true}
	for _, ep := range podMonitor(t).Spec.PodMetricsEndpoints {
		for _, r := range ep.Relabelings {
			if r.TargetLabel != "" {
				labels[r.TargetLabel] = true
			}
		}
	}
	return labels
}

// podMonitorSpec is the part of the PodMonitor these tests read.
type podMonitorSpec struct {
	Spec struct {
		JobLabel          string `json:"jobLabel"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Relabelings []struct {
				TargetLabel string `json:"targetLabel"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func podMonitor(t *testing.T) podMonitorSpec {
	t.Helper()
	b, err := yaml.Marshal(only(t, "PodMonitor").raw)
	if err != nil {
		t.Fatal(err)
	}
	var pm podMonitorSpec
	if err := yaml.Unmarshal(b, &pm); err != nil {
		t.Fatal(err)
	}
	return pm
}

// selector is one series selector of an expression: a metric name and its
// label matchers.
type selector struct {
	name     string
	matchers []matcher
}

type matcher struct{ label, op, value string }

var (
	selectorRE = regexp.MustCompile(`\b(calico_cni_sync_\w+|up)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	byRE       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// selectors are the agent's series and up in an expression. The rules'
// expressions are simple enough for a regular expression; PromQL itself is
// promtool's to check.
func selectors(expr string) []selector {
	var out []selector
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		s := selector{name: m[1]}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			s.matchers = append(s.matchers, matcher{mm[1], mm[2], mm[3]})
		}
		out = append(out, s)
	}
	return out
}

// resultLabels are the labels an alert's series have: the grouping labels
// of an aggregation, the equality matchers of absent(), else the labels of
// the series selected plus the target labels.
func resultLabels(t *testing.T, expr string) map[string]bool {
	t.Helper()
	labels := map[string]bool{}
	if m := byRE.FindStringSubmatch(expr); m != nil {
		for l := range strings.SplitSeq(m[1], ",") {
			labels[strings.TrimSpace(l)] = true
		}
		return labels
	}
	sels := selectors(expr)
	if strings.Contains(expr, "absent(") {
		for _, s := range sels {
			for _, m := range s.matchers {
				if m.op == "=" {
					labels[m.label] = true
				}
			}
		}
		return labels
	}
	families := exportedFamilies(t)
	for l := range targetLabels(t) {
		labels[l] = true
	}
	for _, s := range sels {
		for l := range families[familyOf(s.name, families)].labels {
			labels[l] = true
		}
	}
	return labels
}

// familyOf is the family a series name belongs to: itself, or the
// histogram whose _bucket, _sum or _count it is.
func familyOf(name string, families map[string]family) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base].typ == "histogram" {
			return base
		}
	}
	return name
}

// labelValues are the values the agent gives a label, where it is an
// enumeration: the cniconf states (file_state's state, writes_total's
// reason: the state that caused the write) and reconciles_total's result.
func labelValues() map[string][]string {
	var states []string
	for _, s := range []cniconf.State{cniconf.InSync, cniconf.Missing, cniconf.StaleToken, cniconf.Outdated,
		cniconf.Corrupt, cniconf.Drifted, cniconf.Shadowed, cniconf.Error} {
		states = append(states, string(s))
	}
	return map[string][]string{"state": states, "reason": states, "result": {"success", "error"}}
}

// TestRulesUseExportedMetrics: every name, label and label value the rules
// select on is one the agent exports (sync/metrics.go), or a label of the
// scrape.
func TestRulesUseExportedMetrics(t *testing.T) {
	families := exportedFamilies(t)
	target := targetLabels(t)
	values := labelValues()
	for _, a := range alerts(t) {
		sels := selectors(a.Expr)
		if len(sels) == 0 {
			t.Errorf("%s: the expression selects no calico_cni_sync_ series and no up: %s", a.Alert, a.Expr)
		}
		for _, s := range sels {
			fam, ok := families[familyOf(s.name, families)]
			if s.name != "up" && !ok {
				t.Errorf("%s: %s is not a metric of sync/metrics.go (it has %v)", a.Alert, s.name, familyNames(families))
				continue
			}
			for _, m := range s.matchers {
				if !fam.labels[m.label] && !target[m.label] {
					t.Errorf("%s: %s has no label %q", a.Alert, s.name, m.label)
				}
				if allowed, enum := values[m.label]; enum && m.op == "=" && !slices.Contains(allowed, m.value) {
					t.Errorf("%s: %s{%s=%q}: the agent never sets that value (it sets %v)", a.Alert, s.name, m.label, m.value, allowed)
				}
			}
		}
		if byLabels := byRE.FindStringSubmatch(a.Expr); byLabels != nil {
			for l := range strings.SplitSeq(byLabels[1], ",") {
				l = strings.TrimSpace(l)
				ok := target[l]
				for _, s := range sels {
					ok = ok || families[familyOf(s.name, families)].labels[l]
				}
				if !ok {
					t.Errorf("%s: grouped by %q, which its series do not have", a.Alert, l)
				}
			}
		}
	}
}

func familyNames(families map[string]family) []string {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestPodMonitorSelectsTheAgent: the PodMonitor selects the pods of the
// base DaemonSet, in its namespace, by the name of its metrics port, and
// names the job what the rules expect.
func TestPodMonitorSelectsTheAgent(t *testing.T) {
	var ds appsv1.DaemonSet
	readYAML(t, filepath.Join("..", "..", "manifests", "base", "daemonset.yaml"), &ds)
	pm := podMonitor(t).Spec
	podLabels := ds.Spec.Template.Labels
	for k, v := range pm.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("the PodMonitor selects %s=%s; the agent's pods have %v", k, v, podLabels)
		}
	}
	if len(pm.Selector.MatchLabels) == 0 {
		t.Error("the PodMonitor selects every pod")
	}
	if !slices.Contains(pm.NamespaceSelector.MatchNames, ds.Namespace) {
		t.Errorf("the PodMonitor looks in %v; the agent runs in %s", pm.NamespaceSelector.MatchNames, ds.Namespace)
	}
	ports := map[string]int32{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
	}
	if len(pm.PodMetricsEndpoints) != 1 {
		t.Fatalf("the PodMonitor has %d endpoints, want 1", len(pm.PodMetricsEndpoints))
	}
	ep := pm.PodMetricsEndpoints[0]
	if port, ok := ports[ep.Port]; !ok || port != 9645 {
		t.Errorf("the PodMonitor scrapes port %q; the agent's ports are %v, /metrics on 9645", ep.Port, ports)
	}
	if ep.Path != "/metrics" {
		t.Errorf("the PodMonitor scrapes %q, want /metrics", ep.Path)
	}
	job := podLabels[pm.JobLabel]
	if pm.JobLabel == "" || job == "" {
		t.Fatalf("jobLabel %q is no label of the agent's pods (%v): the job would be the PodMonitor's namespace/name", pm.JobLabel, podLabels)
	}
	for _, a := range alerts(t) {
		for _, s := range selectors(a.Expr) {
			for _, m := range s.matchers {
				if m.label == "job" && m.value != job {
					t.Errorf("%s selects job=%q; the PodMonitor names the job %q", a.Alert, m.value, job)
				}
			}
		}
	}
}
