package scale

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAuditLogCountsEachRequestOnce: a watch counts when its response
// starts (or, failed, when it completes), anything else when it completes;
// requests are named by verb and resource[/subresource].
func TestAuditLogCountsEachRequestOnce(t *testing.T) {
	lines := `{"auditID":"1","stage":"ResponseComplete","verb":"patch","requestURI":"/api/v1/nodes/n1/status","user":{"username":"system:serviceaccount:calico-cni-sync-scale:agent-7"},"objectRef":{"resource":"nodes","subresource":"status"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05.000001Z"}
{"auditID":"2","stage":"ResponseStarted","verb":"watch","requestURI":"/api/v1/namespaces/calico-system/pods?watch=true","user":{"username":"system:serviceaccount:calico-cni-sync-scale:agent-7"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"2","stage":"ResponseComplete","verb":"watch","requestURI":"/api/v1/namespaces/calico-system/pods?watch=true","user":{"username":"system:serviceaccount:calico-cni-sync-scale:agent-7"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"3","stage":"ResponseComplete","verb":"watch","requestURI":"/api/v1/namespaces/calico-system/configmaps?watch=true","user":{"username":"system:serviceaccount:calico-cni-sync-scale:agent-1"},"objectRef":{"resource":"configmaps"},"responseStatus":{"code":500},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"4","stage":"ResponseComplete","verb":"create","requestURI":"/apis/authentication.k8s.io/v1/selfsubjectreviews","user":{"username":"system:serviceaccount:calico-system:calico-cni-plugin"},"objectRef":{"resource":"selfsubjectreviews"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"5","stage":"ResponseComplete","verb":"get","requestURI":"/readyz?verbose","user":{"username":"controlplane-admin"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"7","stage":"ResponseStarted","verb":"create","requestURI":"/apis/authentication.k8s.io/v1/selfsubjectreviews","user":{},"objectRef":{"resource":"selfsubjectreviews"},"responseStatus":{"code":401},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"8","stage":"ResponseStarted","verb":"get","requestURI":"/api/v1/nodes/n1","user":{"username":"controlplane-admin"},"objectRef":{"resource":"nodes"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05Z"}
{"auditID":"6","stage":"ResponseComp`
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAuditLog(path)
	reqs := a.since(0, nil)
	want := []struct {
		key   string
		agent int
		mine  bool
	}{
		{"patch nodes/status", 7, true},
		{"watch pods", 7, true},
		{"watch configmaps", 1, true},
		{"create selfsubjectreviews", -1, true},
		{"get /readyz", -1, false},
		{"create selfsubjectreviews", -1, false}, // a rejected token: anonymous
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests %v, want %d", len(reqs), reqs, len(want))
	}
	for i, w := range want {
		if reqs[i].key() != w.key || agentIndex(reqs[i]) != w.agent || byAgents(reqs[i]) != w.mine {
			t.Errorf("request %d: got %q agent %d agents' %v, want %q %d %v", i, reqs[i].key(), agentIndex(reqs[i]), byAgents(reqs[i]), w.key, w.agent, w.mine)
		}
	}
	if got := reqs[0].At; !got.Equal(time.Date(2026, 1, 2, 3, 4, 5, 1000, time.UTC)) {
		t.Errorf("received at %v", got)
	}
	// The half-written last line is read once it is complete.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`lete","verb":"update","user":{"username":"system:serviceaccount:calico-cni-sync-scale:agent-0"},"objectRef":{"resource":"leases"},"requestReceivedTimestamp":"2026-01-02T03:04:06Z"}` + "\n")
	_ = f.Close()
	if got := a.since(len(want), nil); len(got) != 1 || got[0].key() != "update leases" || agentIndex(got[0]) != 0 {
		t.Errorf("after the line was completed: %v", got)
	}
}

// TestPerHourAtDefaults: counts in a shortened window scale to an hour at
// the default periods.
func TestPerHourAtDefaults(t *testing.T) {
	window, resync, check := 2*time.Minute, 20*time.Second, 30*time.Second
	for _, tc := range []struct {
		key   string
		count int
		want  float64
	}{
		{"update leases", 600, 12},            // 6 per agent in the window: one per resync
		{"create selfsubjectreviews", 400, 6}, // 4 per agent: one per token check
		{"watch configmaps", 100, 30},         // by time: 1 per 2 minutes
	} {
		if got := perHourAtDefaults(tc.key, tc.count, 100, window, resync, check); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("%s: got %v, want %v", tc.key, got, tc.want)
		}
	}
	if r, c := idlePeriods(10 * time.Minute); r != 5*time.Minute || c != 10*time.Minute {
		t.Errorf("a 10m window runs the default periods, got %v %v", r, c)
	}
}
