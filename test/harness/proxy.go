package harness

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// Proxy forwards to the API server and counts the requests by verb and
// resource, watches apart, so an agent's traffic is measured, not assumed.
// The proxy's own client certificate authenticates what it forwards for
// the agent (bearer token "via-proxy", Config); a request with a bearer
// token of its own, such as the CNI plugin's request the agent's credential
// probe makes with calico-kubeconfig, is forwarded with that token and no
// client certificate, so the API server judges that token.
type Proxy struct {
	srv     *httptest.Server
	mu      sync.Mutex
	counts  map[string]int
	watches int
}

// NewProxy starts a proxy in front of the API server cfg reaches, stopped
// when tb ends.
func NewProxy(tb testing.TB, cfg *rest.Config, host string) *Proxy {
	tb.Helper()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	anon, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CAFile: cfg.CAFile}})
	if err != nil {
		tb.Fatal(err)
	}
	target, _ := url.Parse("https://" + host)
	p := &Proxy{counts: map[string]int{}}
	rp := &httputil.ReverseProxy{Transport: rt, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Header.Del("Authorization")
	}}
	own := &httputil.ReverseProxy{Transport: anon, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
	}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
			p.watches++
		} else {
			p.counts[r.Method+" "+ResourceOf(r.URL.Path)]++
		}
		p.mu.Unlock()
		if auth := r.Header.Get("Authorization"); auth != "" && auth != "Bearer via-proxy" {
			own.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	if p.srv.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	p.srv.StartTLS()
	tb.Cleanup(p.srv.Close)
	return p
}

// Host is the proxy's address, host:port on loopback.
func (p *Proxy) Host() string { return p.srv.Listener.Addr().String() }

// Config is a client config for the agent that goes through the proxy.
func (p *Proxy) Config() *rest.Config {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	return &rest.Config{Host: p.srv.URL, BearerToken: "via-proxy", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
}

// Snapshot is the requests so far by "VERB resource", and the watches.
func (p *Proxy) Snapshot() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out, p.watches
}

// Requests is how many requests that are not watches went through.
func (p *Proxy) Requests() int64 {
	counts, _ := p.Snapshot()
	n := 0
	for _, v := range counts {
		n += v
	}
	return int64(n)
}

// Watches is how many watches were opened.
func (p *Proxy) Watches() int64 {
	_, w := p.Snapshot()
	return int64(w)
}

// ResourceOf keeps the resource of an API path and its subresource, not
// the names in it: /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]] or
// /apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME[/SUB]], or the same
// without a namespace.
func ResourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	rest := parts
	switch {
	case len(parts) > 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) > 3 && parts[0] == "apis":
		rest = parts[3:]
	}
	if len(rest) > 2 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	switch len(rest) {
	case 0:
		return path
	case 1, 2:
		return rest[0]
	default:
		return rest[0] + "/" + rest[2]
	}
}
