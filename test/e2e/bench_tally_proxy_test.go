package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// tallyProxy stands between one agent and the API server and tallies what
// the agent asks and receives: requests by the verb the API server would
// log (get, list, watch, watchlist for a watch that sends the initial
// objects, create, update, patch, delete) and resource, the bytes of the
// answers' bodies, and a watch's events by type. A Lease update is
// "update leases (state)" when it changes the rollout state annotation,
// "update leases (renewal)" when it does not.
// Like harness.Proxy it forwards with its own client certificate: the
// agent's kubeconfig (Config) holds the bearer token "via-proxy".
type tallyProxy struct {
	srv *httptest.Server

	mu    sync.Mutex
	t     tally
	state map[string]string // Lease name: the state annotation it was last written with
}

// tally is what went through a tallyProxy.
type tally struct {
	Requests map[string]int   // by "verb resource"
	Bytes    map[string]int64 // the answers' bodies, by "verb resource"
	Events   map[string]int   // watch events, by "resource TYPE"
}

func newTally() tally {
	return tally{Requests: map[string]int{}, Bytes: map[string]int64{}, Events: map[string]int{}}
}

func newTallyProxy(tb testing.TB) *tallyProxy {
	tb.Helper()
	rt, err := rest.TransportFor(cp.Config)
	must(tb, err)
	target, err := url.Parse("https://" + cp.Host())
	must(tb, err)
	p := &tallyProxy{t: newTally(), state: map[string]string{}}
	rp := &httputil.ReverseProxy{Transport: rt, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Header.Del("Authorization")
	}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := p.classify(r)
		p.mu.Lock()
		p.t.Requests[key]++
		p.mu.Unlock()
		verb, resource, _ := strings.Cut(key, " ")
		resource, _, _ = strings.Cut(resource, " ")
		tw := &tallyWriter{ResponseWriter: w, p: p, key: key, watched: strings.HasPrefix(verb, "watch"), resource: resource}
		rp.ServeHTTP(tw, r)
		tw.close()
	}))
	if p.srv.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	p.srv.StartTLS()
	tb.Cleanup(p.srv.Close)
	return p
}

// Config is the agent's client config, through the proxy.
func (p *tallyProxy) Config() *rest.Config {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	return &rest.Config{Host: p.srv.URL, BearerToken: "via-proxy", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
}

// Snapshot is the tally so far.
func (p *tallyProxy) Snapshot() tally {
	p.mu.Lock()
	defer p.mu.Unlock()
	return tally{Requests: maps.Clone(p.t.Requests), Bytes: maps.Clone(p.t.Bytes), Events: maps.Clone(p.t.Events)}
}

// classify names a request "verb resource"; a Lease's create or update
// is read to tell a state change from a renewal.
func (p *tallyProxy) classify(r *http.Request) string {
	resource := harness.ResourceOf(r.URL.Path)
	q := r.URL.Query()
	var verb string
	switch r.Method {
	case http.MethodGet:
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			verb = "watch"
			if q.Get("sendInitialEvents") == "true" {
				verb = "watchlist"
			}
		case named(r.URL.Path):
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = strings.ToLower(r.Method)
	}
	key := verb + " " + resource
	if resource != "leases" || (verb != "create" && verb != "update") || r.Body == nil {
		return key
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return key + " (unread)"
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
	lease, ok := obj.(*coordinationv1.Lease)
	if err != nil || !ok {
		return key + " (unread)"
	}
	now := lease.Annotations[rollout.StateAnnotation]
	p.mu.Lock()
	before, seen := p.state[lease.Name]
	p.state[lease.Name] = now
	p.mu.Unlock()
	if verb == "update" && seen && before == now {
		return key + " (renewal)"
	}
	return key + " (state)"
}

// named reports whether an API path names one object (a get, not a list).
func named(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) > 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) > 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return false
	}
	if len(parts) > 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	return len(parts) >= 2
}

// tallyWriter counts an answer's bytes as they pass (on the wire:
// compressed when the API server compressed them), and a watch stream's
// events by type: a JSON stream's lines, a protobuf stream's
// length-prefixed frames (the agent's clients ask for protobuf). The API
// server gzips a watch that began as a watch-list (sendInitialEvents) when
// the client accepts it, each flush a gzip member of its own: those are
// decompressed member by member, in a goroutine, before they are counted.
type tallyWriter struct {
	http.ResponseWriter
	p        *tallyProxy
	key      string
	resource string
	watched  bool
	pending  []byte // a JSON line's start, or a protobuf frame not yet whole

	gz     *io.PipeWriter // the compressed stream, to the goroutine
	gzDone chan struct{}
}

func (w *tallyWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.p.mu.Lock()
	w.p.t.Bytes[w.key] += int64(n)
	w.p.mu.Unlock()
	if !w.watched || n == 0 {
		return n, err
	}
	if w.gz == nil && w.Header().Get("Content-Encoding") == "gzip" {
		w.gunzip()
	}
	if w.gz != nil {
		_, _ = w.gz.Write(b[:n])
		return n, err
	}
	w.count(w.frames(b[:n]))
	return n, err
}

// gunzip starts the goroutine that decompresses each gzip member as it
// ends and counts its events.
func (w *tallyWriter) gunzip() {
	pr, pw := io.Pipe()
	w.gz, w.gzDone = pw, make(chan struct{})
	go func() {
		defer close(w.gzDone)
		br := bufio.NewReader(pr)
		zr := new(gzip.Reader)
		for {
			if err := zr.Reset(br); err != nil {
				pr.CloseWithError(err) // io.EOF: the stream ended
				return
			}
			zr.Multistream(false)
			plain, err := io.ReadAll(zr)
			if err != nil {
				pr.CloseWithError(err)
				return
			}
			w.p.mu.Lock()
			w.p.t.Bytes[w.key+" (decompressed)"] += int64(len(plain))
			w.p.mu.Unlock()
			w.count(w.frames(plain))
		}
	}()
}

// close ends the decompression, if any, once the answer is over.
func (w *tallyWriter) close() {
	if w.gz != nil {
		_ = w.gz.Close()
		<-w.gzDone
	}
}

func (w *tallyWriter) count(events map[string]int) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	for typ, k := range events {
		w.p.t.Events[w.resource+" "+typ] += k
	}
}

// frames counts the events that end in b (uncompressed), by type.
func (w *tallyWriter) frames(b []byte) map[string]int {
	events := map[string]int{}
	switch ct := w.Header().Get("Content-Type"); {
	case strings.HasPrefix(ct, "application/json"):
		for _, c := range b {
			if c == '\n' {
				events[jsonEventType(w.pending)]++
				w.pending = w.pending[:0]
				continue
			}
			if len(w.pending) < 32 {
				w.pending = append(w.pending, c)
			}
		}
	case strings.HasPrefix(ct, "application/vnd.kubernetes.protobuf"):
		w.pending = append(w.pending, b...)
		for len(w.pending) >= 4 {
			size := int(w.pending[0])<<24 | int(w.pending[1])<<16 | int(w.pending[2])<<8 | int(w.pending[3]) // big-endian
			if len(w.pending) < 4+size {
				break
			}
			var ev metav1.WatchEvent
			typ := "unknown"
			if ev.Unmarshal(w.pending[4:4+size]) == nil {
				typ = ev.Type
			}
			events[typ]++
			w.pending = w.pending[4+size:]
		}
	default:
		events["unknown"]++
	}
	return events
}

// jsonEventType reads the type of a watch event from the start of its
// JSON line: {"type":"MODIFIED",...
func jsonEventType(head []byte) string {
	_, rest, ok := bytes.Cut(head, []byte(`"type":"`))
	if !ok {
		return "unknown"
	}
	typ, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return "unknown"
	}
	return string(typ)
}

// Flush passes a watch's events on as they come.
func (w *tallyWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *tallyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// minus is what t has more than before.
func (t tally) minus(before tally) tally {
	out := newTally()
	for k, v := range t.Requests {
		if d := v - before.Requests[k]; d != 0 {
			out.Requests[k] = d
		}
	}
	for k, v := range t.Bytes {
		if d := v - before.Bytes[k]; d != 0 {
			out.Bytes[k] = d
		}
	}
	for k, v := range t.Events {
		if d := v - before.Events[k]; d != 0 {
			out.Events[k] = d
		}
	}
	return out
}

// add sums tallies.
func (t tally) add(o tally) {
	for k, v := range o.Requests {
		t.Requests[k] += v
	}
	for k, v := range o.Bytes {
		t.Bytes[k] += v
	}
	for k, v := range o.Events {
		t.Events[k] += v
	}
}

// perNode lists the requests by kind, divided by nodes, largest first.
func (t tally) perNode(nodes int) string {
	keys := make([]string, 0, len(t.Requests))
	for k := range t.Requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if t.Requests[keys[i]] != t.Requests[keys[j]] {
			return t.Requests[keys[i]] > t.Requests[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+" "+perNodeCount(t.Requests[k], nodes))
	}
	return strings.Join(out, ", ")
}

// perNodeCount is n/nodes, whole when it is, else to two decimals.
func perNodeCount(n, nodes int) string {
	if n%nodes == 0 {
		return fmt.Sprint(n / nodes)
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(nodes))
}
