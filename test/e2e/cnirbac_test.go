package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-cni-sync/calico-cni-sync/test/harness"
)

// bindCNIAccounts grants calico-node and calico-cni-plugin of ns Calico's
// CNI ClusterRole (harness.BindCNIAccounts) until the test ends, and
// returns the binding's name: a test that takes the grant away deletes it.
func bindCNIAccounts(t testing.TB, ctx context.Context, ns string) string {
	t.Helper()
	name := fmt.Sprintf("e2e-cni-%s-%d", ns, seq.Add(1))
	must(t, harness.BindCNIAccounts(ctx, cp.Client, name, ns))
	t.Cleanup(func() {
		err := cp.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete ClusterRoleBinding %s: %v", name, err)
		}
	})
	return name
}

// dialGuard is the proxy every agent process is given (HTTPS_PROXY and
// HTTP_PROXY, NO_PROXY for loopback): a request to an address that is not
// on loopback, such as the fixtures' cluster address 10.96.0.1, reaches it
// instead of the network, is refused, and fails the run. The test API
// server is on loopback and is reached directly.
type dialGuard struct {
	srv  *http.Server
	addr string
	mu   sync.Mutex
	seen map[string]int
}

func startDialGuard() (*dialGuard, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &dialGuard{addr: l.Addr().String(), seen: map[string]int{}}
	g.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.seen[r.Host]++
		g.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "the e2e tests never dial "+r.Host, http.StatusForbidden)
	})}
	go func() { _ = g.srv.Serve(l) }()
	return g, nil
}

// env is what an agent process needs to go through the guard.
func (g *dialGuard) env() []string {
	return []string{"HTTPS_PROXY=http://" + g.addr, "HTTP_PROXY=http://" + g.addr, "NO_PROXY=127.0.0.1,localhost,::1",
		"https_proxy=", "http_proxy=", "no_proxy="}
}

// dialled lists what reached the guard.
func (g *dialGuard) dialled() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for host, n := range g.seen {
		out = append(out, fmt.Sprintf("%s (%d)", host, n))
	}
	sort.Strings(out)
	return out
}
