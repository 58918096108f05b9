package monitoring

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// runbookURL is where every alert's runbook_url points, followed by the
// anchor of its section.
const runbookURL = "https://github.com/calico-cni-sync/calico-cni-sync/blob/main/docs/RUNBOOK.md#"

const runbookFile = "../../docs/RUNBOOK.md"

// alertRule is one alerting rule of the PrometheusRule.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// alerts are the PrometheusRule's alerting rules, in order.
func alerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := yaml.Marshal(only(t, "PrometheusRule").raw["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Groups []struct {
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the PrometheusRule has no alerts")
	}
	return out
}

// unitTestFile is the part of a promtool unit test file these tests read.
type unitTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name           string `json:"name"`
		AlertRuleTests []struct {
			EvalTime  string           `json:"eval_time"`
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestEveryAlertIsTestedBothWays: each alert has a unit test where it fires
// and one where it stays quiet, and every unit test names a real alert (a
// misspelt alertname would pass its quiet case without testing anything).
func TestEveryAlertIsTestedBothWays(t *testing.T) {
	var f unitTestFile
	readYAML(t, unitTests, &f)
	if !slices.Equal(f.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s: rule_files is %v, want [%s] (the file TestPromtoolTestRules writes)", unitTests, f.RuleFiles, rulesFile)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	known := map[string]bool{}
	for _, a := range alerts(t) {
		known[a.Alert] = true
	}
	for _, tc := range f.Tests {
		for _, at := range tc.AlertRuleTests {
			if !known[at.Alertname] {
				t.Errorf("%s: test %q at %s names %q, which is no alert of the PrometheusRule", unitTests, tc.Name, at.EvalTime, at.Alertname)
			}
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname]++
			} else {
				quiet[at.Alertname]++
			}
		}
	}
	for name := range known {
		if fires[name] == 0 {
			t.Errorf("%s has no unit test where it fires", name)
		}
		if quiet[name] == 0 {
			t.Errorf("%s has no unit test where it stays quiet", name)
		}
	}
}

// TestAlertsAreDocumented: every alert has a severity, a summary, a
// description that names the labels its series have, and a runbook_url to
// a section of docs/RUNBOOK.md that exists.
func TestAlertsAreDocumented(t *testing.T) {
	raw, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	runbook := string(raw)
	anchors := headingAnchors(runbook)
	for _, a := range alerts(t) {
		t.Run(a.Alert, func(t *testing.T) {
			if !strings.HasPrefix(a.Alert, "CalicoCNISync") {
				t.Errorf("alert %s: name does not start with CalicoCNISync", a.Alert)
			}
			if s := a.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("severity %q, want warning or critical", s)
			}
			for _, key := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(a.Annotations[key]) == "" {
					t.Errorf("no %s annotation", key)
				}
			}
			anchor, ok := strings.CutPrefix(a.Annotations["runbook_url"], runbookURL)
			switch {
			case !ok:
				t.Errorf("runbook_url %q does not start with %s", a.Annotations["runbook_url"], runbookURL)
			case anchor != strings.ToLower(a.Alert):
				t.Errorf("runbook_url anchor %q, want the alert's own section %q", anchor, strings.ToLower(a.Alert))
			case !anchors[anchor]:
				t.Errorf("docs/RUNBOOK.md has no section %q (a heading \"## %s\")", anchor, a.Alert)
			}
			has := resultLabels(t, a.Expr)
			for key, text := range a.Annotations {
				for _, m := range templateLabel.FindAllStringSubmatch(text, -1) {
					if !has[m[1]] {
						t.Errorf("%s uses $labels.%s, which the alert's series do not have (they have %v)", key, m[1], sortedKeys(has))
					}
				}
			}
			// Where the series have them, the description names the node
			// and the file: the first thing whoever is paged needs.
			for _, l := range []string{"node", "file"} {
				if has[l] && !strings.Contains(a.Annotations["description"], "$labels."+l) {
					t.Errorf("the description does not name the %s ({{ $labels.%s }})", l, l)
				}
			}
		})
	}
	// The runbook's own links between sections resolve too.
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(runbook, -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/RUNBOOK.md links to #%s, which is no section of it", m[1])
		}
	}
}

var templateLabel = regexp.MustCompile(`\$labels\.(\w+)`)

// headingAnchors are the anchors GitHub gives the Markdown headings:
// lower case, punctuation dropped, spaces as dashes.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for line := range strings.Lines(md) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(title), ""), " ", "-")] = true
	}
	return anchors
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
