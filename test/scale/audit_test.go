package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// auditPolicy logs every request at level Metadata (who, what, when, the
// response code; never a body, so never a token), once it has completed or,
// for a watch, once its response has started.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// auditFlags are the kube-apiserver flags that write the audit log under dir.
func auditFlags(dir string) (map[string]string, string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, "", err
	}
	log := filepath.Join(dir, "audit.log")
	return map[string]string{
		"audit-policy-file":   policy,
		"audit-log-path":      log,
		"audit-log-format":    "json",
		"audit-log-mode":      "blocking",
		"audit-log-maxsize":   "0",
		"audit-log-maxbackup": "0",
	}, log, nil
}

// request is one API request as the audit log records it.
type request struct {
	ID       string
	Verb     string
	Resource string // resource[/subresource], or the path of a non-resource URL
	User     string
	Code     int
	At       time.Time // when the API server received it
}

// key is how requests are counted: "verb resource".
func (r request) key() string { return r.Verb + " " + r.Resource }

type auditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Received time.Time `json:"requestReceivedTimestamp"`
}

// auditLog follows the audit log file and keeps every request read so
// far, each once: a watch when its response starts (or, if it never did,
// when it completes), any other request when it completes (or, refused
// authentication, when its 401 response starts).
type auditLog struct {
	path    string
	mu      sync.Mutex
	offset  int64
	reqs    []request
	started map[string]bool // watches whose response has started
}

func newAuditLog(path string) *auditLog {
	return &auditLog{path: path, started: map[string]bool{}}
}

// refresh reads the lines appended since the last call.
func (a *auditLog) refresh() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil // EOF, or a line still being written: read it next time
		}
		a.offset += int64(len(line))
		if req, ok := a.parse(line); ok {
			a.reqs = append(a.reqs, req)
		}
	}
}

func (a *auditLog) parse(line []byte) (request, bool) {
	var ev auditEvent
	if err := json.Unmarshal(bytes.TrimSpace(line), &ev); err != nil {
		return request{}, false
	}
	if ev.Verb == "watch" {
		switch {
		case ev.Stage == "ResponseStarted":
			a.started[ev.AuditID] = true
		case ev.Stage == "ResponseComplete" && !a.started[ev.AuditID]:
		default:
			delete(a.started, ev.AuditID)
			return request{}, false
		}
	} else if ev.Stage != "ResponseComplete" && ev.Stage != "Panic" &&
		(ev.Stage != "ResponseStarted" || ev.ResponseStatus == nil || ev.ResponseStatus.Code != 401) {
		// A request whose authentication failed (a rejected token) is
		// logged once, at ResponseStarted with code 401.
		return request{}, false
	}
	req := request{ID: ev.AuditID, Verb: ev.Verb, User: ev.User.Username, At: ev.Received, Resource: resourceOf(ev.RequestURI)}
	if ev.ObjectRef != nil && ev.ObjectRef.Resource != "" {
		req.Resource = ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			req.Resource += "/" + ev.ObjectRef.Subresource
		}
	}
	if ev.ResponseStatus != nil {
		req.Code = ev.ResponseStatus.Code
	}
	return req, true
}

// resourceOf names a non-resource request by its path without the query.
func resourceOf(uri string) string {
	path, _, _ := strings.Cut(uri, "?")
	return path
}

// mark is a position in the requests read so far.
func (a *auditLog) mark() int {
	_ = a.refresh()
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs)
}

// since returns the requests read after mark that match keep.
func (a *auditLog) since(mark int, keep func(request) bool) []request {
	_ = a.refresh()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []request
	for _, r := range a.reqs[mark:] {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// settle waits until no request matching keep has been logged for quiet,
// or until limit, so that a window's count includes the requests its
// change caused after the files were already current.
func (a *auditLog) settle(mark int, keep func(request) bool, quiet, limit time.Duration) {
	seen, since := -1, time.Now()
	// Past limit the window is counted as it is: a fleet that never goes
	// quiet shows in the counts.
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		if n := len(a.since(mark, keep)); n != seen {
			seen, since = n, time.Now()
		}
		return time.Since(since) >= quiet, nil
	})
}

// Who made a request: the agents (one ServiceAccount each, in
// agentNamespace), a token on a node's disk (the CNI accounts, which the
// agents' token checks use), the harness itself (the admin) or the
// control plane (kube-controller-manager, the API server's own loopback).
const agentNamespace = "calico-cni-sync-scale"

func isAgent(r request) bool {
	return strings.HasPrefix(r.User, "system:serviceaccount:"+agentNamespace+":")
}

func isNodeToken(r request) bool {
	return strings.HasPrefix(r.User, "system:serviceaccount:calico-system:") ||
		strings.HasPrefix(r.User, "system:serviceaccount:"+seedNamespace+":")
}

// byAgents keeps what the agents did, with their own identity or with a
// node's token.
func byAgents(r request) bool { return isAgent(r) || isNodeToken(r) }

// agentIndex is the node index of an agent's request, or -1.
func agentIndex(r request) int {
	if !isAgent(r) {
		return -1
	}
	i, err := strconv.Atoi(strings.TrimPrefix(r.User, "system:serviceaccount:"+agentNamespace+":agent-"))
	if err != nil {
		return -1
	}
	return i
}

// counts counts requests by "verb resource".
func counts(reqs []request) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		out[r.key()]++
	}
	return out
}

// formatCounts renders counts, divided by per (1 for totals), sorted by key.
func formatCounts(c map[string]int, per int) string {
	if len(c) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if per <= 1 {
			parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(c[k])/float64(per)))
		}
	}
	return strings.Join(parts, ", ")
}
