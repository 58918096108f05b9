package e2e

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// TestGuardInstallsUnderDefaultRBAC: on canal and on Calico v3.23-v3.25 the
// CNI account is canal or calico-node, for which the default manifests'
// RBAC refuses the agent a token (it may mint one for calico-cni-plugin
// only). The agent runs under its own ServiceAccount, with the base
// kustomization applied, on the install as the fixture has it, with no
// input flag.
//
//   - calico-node's healthy token on disk: the files are InSync, and the
//     agent makes no TokenRequest at all, pass after pass;
//   - a token the API server rejects: the condition is TokenRejected and
//     names the refused TokenRequest; the token is left as it is; the
//     refused request is retried on its own backoff (a few in 20 passes),
//     not at every pass;
//   - calico-node writes a healthy token again: InSync, and no more
//     requests.
//
// Requests are counted on the wire by a proxy that forwards each with the
// client's own credentials (countingProxy), with the API server's answer.
func TestGuardInstallsUnderDefaultRBAC(t *testing.T) {
	for _, c := range []struct{ fixture, account, conf string }{
		{"canal-v3.32.yaml", "canal", "10-canal.conflist"},
		{"manifest-v3.24.yaml", "calico-node", "10-calico.conflist"},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			e := newInstallEnv(t, "kube-system")
			// Discovery takes the first DaemonSet of calico-system/calico-node,
			// kube-system/calico-node, kube-system/canal; on v3.24 the
			// account is calico-cni-plugin if that ServiceAccount exists.
			e.requireNoDaemonSet("calico-system", "calico-node")
			if c.account == "canal" {
				e.requireNoDaemonSet("kube-system", "calico-node")
			}
			e.eventually(30*time.Second, "no calico-cni-plugin ServiceAccount left by another test", func() error {
				_, err := cp.Client.CoreV1().ServiceAccounts("kube-system").Get(e.ctx, "calico-cni-plugin", metav1.GetOptions{})
				if c.account == "canal" || apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("ServiceAccount kube-system/calico-cni-plugin: %v", err)
			})
			e.installCalico(c.fixture)
			deploy(t, e.ctx, manifestsBase)
			proxy := e.agentThroughProxy()
			caFile := filepath.Join(e.dir, "ca.crt")
			must(t, os.WriteFile(caFile, cp.CAData(), 0o600))

			// calico-node's token watcher has written calico-kubeconfig with
			// a healthy token for the CNI account; the conf is the agent's
			// to write (it holds no token).
			server := "https://" + cp.Host()
			healthy, err := cp.TokenFor(e.ctx, "kube-system", c.account, 24*time.Hour)
			must(t, err)
			kubeconfig := filepath.Join(e.net, "calico-kubeconfig")
			must(t, os.WriteFile(kubeconfig, tokenWatchKubeconfig(e, server, cp.CAData(), healthy), 0o600))
			// The proxy's CA is what the agent's own kubeconfig trusts;
			// calico-kubeconfig must carry the cluster's (--ca-file). A
			// one-second resync makes passes to count.
			a := e.startNodeAgent("--ca-file", caFile, "--resync-period", "1s")

			e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
			e.waitStatus("policy guard, the CNI account, calico-node's token accepted", func(r nodeReport) error {
				tk := r.Token
				if tk.Policy != "guard" || tk.ManagedBy != "calico-node" || tk.ServiceAccount != "kube-system/"+c.account ||
					tk.Source != "tokenrequest" || tk.Accepted == nil || !*tk.Accepted {
					return errorf("token %+v", tk)
				}
				return nil
			})
			if _, err := os.Stat(filepath.Join(e.net, c.conf)); err != nil {
				t.Fatalf("the agent did not write %s, which needs no token: %v", c.conf, err)
			}
			e.waitPasses(a, 10)
			if n := proxy.count("POST serviceaccounts/token"); n != 0 {
				t.Fatalf("%d TokenRequests for a node whose token is healthy (%v)", n, proxy.snapshot())
			}
			if n, err := a.Metric("calico_cni_sync_reconciles_total", `result="error"`); err != nil || n != 0 {
				t.Fatalf("failed passes: %v %v", n, err)
			}
			if _, _, tok, err := e.kubeconfigOnDisk(); err != nil || tok != healthy {
				t.Fatalf("calico-node's healthy token was replaced (%v)", err)
			}

			// The API server rejects the token on disk (bound to an object
			// that is gone), and the agent may not mint another.
			rejected := e.boundToDeletedSecret(c.account)
			must(t, os.WriteFile(kubeconfig, tokenWatchKubeconfig(e, server, cp.CAData(), rejected), 0o600))
			cond := e.waitCondition(e.node, corev1.ConditionTrue, "TokenRejected",
				"the agent cannot replace it", "kube-system/"+c.account, `cannot create resource "serviceaccounts/token"`)
			t.Logf("condition: %s", cond.Message)
			e.waitEvent(e.node, "TokenRejected", `cannot create resource "serviceaccounts/token"`)
			e.waitStatus("calico-kubeconfig StaleToken", func(r nodeReport) error {
				for _, f := range r.Files {
					if filepath.Base(f.Path) == "calico-kubeconfig" && f.State == "StaleToken" {
						return nil
					}
				}
				return errorf("files %+v", r.Files)
			})
			first := proxy.count("POST serviceaccounts/token 403")
			e.waitPasses(a, 20)
			refused := proxy.count("POST serviceaccounts/token 403")
			t.Logf("refused TokenRequests: %d by the time TokenRejected was reported, %d after 20 more passes", first, refused)
			if refused < 1 || refused > 3 || proxy.count("POST serviceaccounts/token") != refused {
				t.Fatalf("%d refused TokenRequests over 20 passes, want 1 to 3, all refused (%v)", refused, proxy.snapshot())
			}
			if _, _, tok, err := e.kubeconfigOnDisk(); err != nil || tok != rejected {
				t.Fatalf("the rejected token was replaced, though nothing could replace it (%v)", err)
			}
			if n, err := a.Metric("calico_cni_sync_reconciles_total", `result="error"`); err != nil || n != 0 {
				t.Fatalf("failed passes: %v %v", n, err)
			}

			// calico-node's refresher writes a healthy token again.
			fresh, err := cp.TokenFor(e.ctx, "kube-system", c.account, 24*time.Hour)
			must(t, err)
			must(t, os.WriteFile(kubeconfig, tokenWatchKubeconfig(e, server, cp.CAData(), fresh), 0o600))
			e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
			before := proxy.count("POST serviceaccounts/token")
			e.waitPasses(a, 10)
			if n := proxy.count("POST serviceaccounts/token"); n != before {
				t.Fatalf("%d TokenRequests after the token on disk was healthy again", n-before)
			}
		})
	}
}

// agentThroughProxy points the agent at the API server through a
// countingProxy, with a real token of the manifests' ServiceAccount, once
// RBAC lets it read its Node (RBAC is cached).
func (e *env) agentThroughProxy() *countingProxy {
	e.t.Helper()
	tok, err := cp.TokenFor(e.ctx, "kube-system", "calico-cni-sync", time.Hour)
	must(e.t, err)
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(tok))
	must(e.t, err)
	e.eventually(30*time.Second, "RBAC of the manifests in effect", func() error {
		return errOf(sa.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{}))
	})
	p := newCountingProxy(e.t)
	e.kubeconfig = filepath.Join(e.dir, "calico-cni-sync.kubeconfig")
	must(e.t, cp.WriteKubeconfig(e.kubeconfig, &rest.Config{Host: p.srv.URL, BearerToken: tok,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})}}))
	return p
}

// waitPasses waits until the agent has completed n more passes.
func (e *env) waitPasses(a *agent, n float64) {
	e.t.Helper()
	passes := func() float64 {
		v, err := a.Metric("calico_cni_sync_reconciles_total")
		must(e.t, err)
		return v
	}
	start := passes()
	e.eventually(60*time.Second, fmt.Sprintf("%v more passes", n), func() error {
		if got := passes() - start; got < n {
			return errorf("%v passes so far", got)
		}
		return nil
	})
}

// countingProxy forwards to the API server with each client's own
// credentials, and counts the requests by "VERB resource" and by "VERB
// resource CODE" (the API server's answer). harness.Proxy authenticates
// what it forwards as itself; here RBAC must judge the agent, and the
// agent's token checks must be made with the token on disk.
type countingProxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
}

func newCountingProxy(t testing.TB) *countingProxy {
	t.Helper()
	rt, err := rest.TransportFor(rest.AnonymousClientConfig(cp.Config))
	must(t, err)
	target, err := url.Parse("https://" + cp.Host())
	must(t, err)
	p := &countingProxy{counts: map[string]int{}}
	rp := &httputil.ReverseProxy{Transport: rt, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		rp.ServeHTTP(rec, r)
		if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
			return
		}
		what := r.Method + " " + harness.ResourceOf(r.URL.Path)
		p.mu.Lock()
		p.counts[what]++
		p.counts[fmt.Sprintf("%s %d", what, rec.code)]++
		p.mu.Unlock()
	}))
	if p.srv.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

// count is how many requests matched what ("VERB resource" or "VERB
// resource CODE").
func (p *countingProxy) count(what string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[what]
}

// snapshot lists the counts, for a failure to show.
func (p *countingProxy) snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, v := range p.counts {
		out = append(out, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// statusRecorder keeps the status code the proxied answer had.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush passes streaming through (watches).
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
