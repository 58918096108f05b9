package inputs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestHungServerNeverBlocksAPass: an API server that accepts a request and
// never answers costs each call of a pass its timeout, no more: the loop's
// single worker is never wedged.
func TestHungServerNeverBlocksAPass(t *testing.T) {
	saved := APITimeout
	APITimeout = 200 * time.Millisecond
	t.Cleanup(func() { APITimeout = saved })
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(func() { close(release); srv.Close() })
	cfg := &rest.Config{Host: srv.URL}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(ctx context.Context) error{
		"discovery": func(ctx context.Context) error {
			_, err := InstallFromDaemonSet(APICluster{Client: client}, "", "node-1", func(string) (string, bool) { return "", false }, "", "")(ctx)
			return err
		},
		"ConfigMap": func(ctx context.Context) error {
			_, err := ConfigMapFromAPI(client, "kube-system", "calico-config")(ctx)
			return err
		},
		"token Secret": func(ctx context.Context) error {
			_, err := SecretTokenFromAPI(client, "").Token(ctx, token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}})
			return err
		},
		"TokenRequest": func(ctx context.Context) error {
			_, err := NewTokenRequester(client, time.Hour, nil).Token(ctx, token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}})
			return err
		},
		"token check": func(ctx context.Context) error {
			if v := TokenAccepted(ctx, cfg, "x.y.z"); v != nil {
				t.Errorf("a hung server gave a verdict: %v", *v)
			}
			return context.DeadlineExceeded
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := call(context.Background())
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the call took %v against a hung server", took)
			}
			if err == nil {
				t.Fatal("no error from a hung server")
			}
		})
	}
}
