package measure

import (
	"os"
	"strings"
	"testing"
)

func TestMetricSum(t *testing.T) {
	text := `# HELP calico_cni_sync_writes_total Files written.
# TYPE calico_cni_sync_writes_total counter
calico_cni_sync_writes_total{file="conf",reason="Outdated"} 3
calico_cni_sync_writes_total{file="kubeconfig",reason="StaleToken"} 2
calico_cni_sync_writes_total_other 100
calico_cni_sync_up 1
`
	for _, c := range []struct {
		name  string
		parts []string
		want  float64
	}{
		{"calico_cni_sync_writes_total", nil, 5},
		{"calico_cni_sync_writes_total", []string{`file="conf"`}, 3},
		{"calico_cni_sync_writes_total", []string{`file="conf"`, `reason="StaleToken"`}, 0},
		{"calico_cni_sync_up", nil, 1},
	} {
		got, err := MetricSum(strings.NewReader(text), c.name, c.parts...)
		if err != nil || got != c.want {
			t.Errorf("%s%v = %v, %v; want %v", c.name, c.parts, got, err, c.want)
		}
	}
}

func TestProc(t *testing.T) {
	rss, anon, err := Memory(os.Getpid())
	if err != nil || rss <= 0 || anon <= 0 || anon > rss {
		t.Errorf("Memory: rss %d anon %d KiB, %v", rss, anon, err)
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Errorf("CPU: %v", err)
	}
	if _, _, err := Memory(-1); err == nil {
		t.Error("Memory of no process: no error")
	}
}
