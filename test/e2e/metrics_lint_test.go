package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// documentedMetrics are the agent's metrics as the README lists them ("The
// node agent"), with their types and labels: names people have alerts on.
var documentedMetrics = map[string]struct {
	typ    string
	labels []string
}{
	"calico_cni_sync_reconciles_total":               {"counter", []string{"result"}},
	"calico_cni_sync_writes_total":                   {"counter", []string{"file", "reason"}},
	"calico_cni_sync_file_state":                     {"gauge", []string{"file", "state"}},
	"calico_cni_sync_token_expiry_timestamp_seconds": {"gauge", nil},
	"calico_cni_sync_token_accepted":                 {"gauge", nil},
	"calico_cni_sync_credential_verdict":             {"gauge", []string{"plugin", "verdict"}},
	"calico_cni_sync_last_success_timestamp_seconds": {"gauge", nil},
	"calico_cni_sync_trigger_to_disk_seconds":        {"histogram", []string{"le"}},
}

// TestMetricsLint scrapes a running agent that has written a node's files
// and lints the exposition with promtool check metrics (Prometheus'
// conventions: _total counters, base units, snake case, help text). A
// problem with one of the agent's own metrics fails; the Go and process
// collectors' are theirs, and only logged. The documented metrics must be
// there, with their types and labels, for the lint to mean anything.
func TestMetricsLint(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package "+
			"(apt-get install prometheus, as root; only promtool is used, the service need not run)", err)
	}
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent()
	// The files were Missing: by the time the condition says InSync the
	// agent has written and counted them (metrics before the report), so
	// every family, writes_total included, has a series.
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	body := scrape(t, a)

	types, labels := exposition(body)
	for name, want := range documentedMetrics {
		if types[name] != want.typ {
			t.Errorf("%s: type %q, want %q", name, types[name], want.typ)
		}
		got := labels[name]
		if want.typ == "histogram" {
			got = labels[name+"_bucket"]
		}
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want.labels) {
			t.Errorf("%s: labels %v, want %v", name, got, want.labels)
		}
	}
	for name := range types {
		if _, ok := documentedMetrics[name]; strings.HasPrefix(name, "calico_cni_sync_") && !ok {
			t.Errorf("%s is exported but not documented in the README's list", name)
		}
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	// promtool check metrics: 0 clean, 3 lint problems, anything else an
	// exposition it could not read.
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 3) {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "calico_cni_sync_"):
			t.Errorf("promtool check metrics: %s", line)
		case strings.HasPrefix(line, "go_"), strings.HasPrefix(line, "process_"), strings.HasPrefix(line, "promhttp_"):
			t.Logf("promtool check metrics, not ours: %s", line)
		default:
			t.Errorf("promtool check metrics: unexpected output: %s", line)
		}
	}
}

// scrape is the agent's /metrics in the text format, as Prometheus asks.
func scrape(t *testing.T, a *agent) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+a.Addr()+"/metrics", nil)
	must(t, err)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	return body
}

// exposition reads a text exposition's families and their types (from the
// TYPE lines), and each series name's label names, in order.
func exposition(body []byte) (types map[string]string, labels map[string][]string) {
	types, labels = map[string]string{}, map[string][]string{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				types[name] = typ
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, hasLabels := strings.Cut(line, "{")
		if !hasLabels {
			name, _, _ = strings.Cut(line, " ")
			if _, seen := labels[name]; !seen {
				labels[name] = nil
			}
			continue
		}
		var names []string
		for rest != "" && rest[0] != '}' {
			label, after, ok := strings.Cut(rest, `="`)
			if !ok {
				break
			}
			names = append(names, strings.TrimLeft(label, ","))
			rest = skipQuoted(after)
		}
		if _, seen := labels[name]; !seen {
			labels[name] = names
		}
	}
	return types, labels
}

// skipQuoted returns what follows the closing quote of a label value (its
// opening quote already consumed), escapes honoured.
func skipQuoted(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[i+1:]
		}
	}
	return ""
}
