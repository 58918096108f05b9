package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// pastRenewer is a TokenRequest source whose renewal time has passed, as
// it has under policy guard once the token it gave is older than its
// renewal moment: passes that write no token do not ask it.
type pastRenewer struct {
	value string
	asked atomic.Int32
}

func (s *pastRenewer) Token(context.Context, token.Need) (token.Token, error) {
	s.asked.Add(1)
	return token.Token{Value: s.value, Source: token.SourceTokenRequest}, nil
}

func (s *pastRenewer) NextRenewal() time.Time { return time.Now().Add(-time.Minute) }

func (s *pastRenewer) Invalidate() {}

// TestPastRenewalSchedulesNothing: under policy guard a pass that needs no
// token leaves the source's renewal time behind it; the loop must not take
// that for a pass due now, or it would run passes back to back for good.
func TestPastRenewalSchedulesNothing(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	var mtu atomic.Pointer[string]
	m := "1400"
	mtu.Store(&m)
	a := testAgent(t, client, &mtu)
	claims, err := json.Marshal(map[string]any{"sub": "system:serviceaccount:kube-system:calico-cni-plugin",
		"iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	src := &pastRenewer{value: enc([]byte(`{"alg":"RS256"}`)) + "." + enc(claims) + "." + enc([]byte("sig"))}
	a.reconciler.Token, a.reconciler.Policy, a.reconciler.ServiceAccount = src, token.PolicyGuard, "calico-cni-plugin"
	ctx := context.Background()
	for pass := range 2 { // the first writes the files with the source's token; the second needs none
		a.queue.Trigger("test")
		if !a.processNext(ctx) {
			t.Fatal("the queue shut down")
		}
		if n := a.queue.q.Len(); n != 0 {
			t.Fatalf("pass %d: %d passes queued at once after it", pass+1, n)
		}
	}
	if n := src.asked.Load(); n != 1 {
		t.Fatalf("the source was asked %d times, want once (the first pass's write)", n)
	}
}
