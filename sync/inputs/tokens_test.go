package inputs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func secret(name string, created int, sa, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", CreationTimestamp: metav1.NewTime(time.Unix(int64(created), 0)),
			Annotations: map[string]string{corev1.ServiceAccountNameKey: sa}},
		Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"token": []byte(token)},
	}
}

func TestPickTokenSecret(t *testing.T) {
	tests := []struct {
		name    string
		secrets []*corev1.Secret
		want    string
	}{
		{"newest wins", []*corev1.Secret{secret("a", 1, "calico-node", "t1"), secret("b", 2, "calico-node", "t2")}, "b"},
		{"unpopulated newest is skipped", []*corev1.Secret{secret("a", 1, "calico-node", "t1"), secret("b", 2, "calico-node", "")}, "a"},
		{"other accounts ignored", []*corev1.Secret{secret("a", 1, "calico-node", "t1"), secret("z", 9, "default", "t9")}, "a"},
		{"same time: name breaks the tie", []*corev1.Secret{secret("a", 1, "calico-node", "t1"), secret("c", 1, "calico-node", "t3")}, "c"},
		{"none", []*corev1.Secret{secret("z", 9, "default", "t9")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickTokenSecret(tc.secrets, "calico-node")
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "calico-node") {
					t.Fatalf("want an error naming the account, got %v", err)
				}
				return
			}
			if err != nil || got.Name != tc.want {
				t.Fatalf("got %v %v, want %s", got, err, tc.want)
			}
		})
	}
}

func fakeTokens(fail *bool, now func() time.Time) *fake.Clientset {
	c := fake.NewClientset()
	n := 0
	c.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if *fail {
			return true, nil, errors.New("apiserver down")
		}
		n++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		exp := now().Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{
			Token: "token-" + string(rune('0'+n)), ExpirationTimestamp: metav1.NewTime(exp)}}, nil
	})
	return c
}

func TestTokenRequesterRenewal(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	fail := false
	r := NewTokenRequester(fakeTokens(&fail, now), 10*time.Hour, now)
	r.jitter = func() float64 { return 0.5 } // renew with 25 % left
	ctx := context.Background()
	get := func() string {
		t.Helper()
		tok, err := r.Token(ctx, token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	if get() != "token-1" {
		t.Fatal("first token")
	}
	if want := clock.Add(7*time.Hour + 30*time.Minute); !r.NextRenewal().Equal(want) {
		t.Fatalf("renewal at %v, want %v (25%% of the lifetime left)", r.NextRenewal(), want)
	}
	clock = clock.Add(7 * time.Hour)
	if get() != "token-1" {
		t.Fatal("renewed too early")
	}
	clock = clock.Add(31 * time.Minute)
	fail = true
	if get() != "token-1" {
		t.Fatal("a failed renewal must keep the still-valid token")
	}
	if d := r.NextRenewal().Sub(clock); d <= 0 || d > time.Minute {
		t.Fatalf("retry in %v, want a short backoff", d)
	}
	fail = false
	clock = r.NextRenewal()
	if get() != "token-2" {
		t.Fatal("renewal after the backoff")
	}
	r.Invalidate()
	if d := r.NextRenewal().Sub(clock); d > minRenewal {
		t.Fatalf("a rejected token is replaced in %v, want within %v", d, minRenewal)
	}
	clock = r.NextRenewal()
	if get() != "token-3" {
		t.Fatal("a rejected token must be replaced at once")
	}
	fail = true
	clock = clock.Add(11 * time.Hour)
	if _, err := r.Token(ctx, token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}}); err == nil {
		t.Fatal("an expired token that cannot be renewed must be an error")
	}
}

func TestTokenRequesterJitterRange(t *testing.T) {
	for _, j := range []float64{0, 0.999} {
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		now := func() time.Time { return clock }
		fail := false
		r := NewTokenRequester(fakeTokens(&fail, now), 100*time.Minute, now)
		r.jitter = func() float64 { return j }
		if _, err := r.Token(context.Background(), token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}}); err != nil {
			t.Fatal(err)
		}
		left := clock.Add(100 * time.Minute).Sub(r.NextRenewal())
		if left < 20*time.Minute || left > 30*time.Minute {
			t.Fatalf("jitter %v leaves %v, want 20–30 %% of 100m", j, left)
		}
	}
}

// TestTokenRequesterIgnoresServerClock: a server clock far ahead of or
// behind the node's never makes a token look expired at birth; renewals
// keep to the granted lifetime on the node's clock and never come faster
// than the floor.
func TestTokenRequesterIgnoresServerClock(t *testing.T) {
	for _, skew := range []time.Duration{-48 * time.Hour, 48 * time.Hour} {
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		now := func() time.Time { return clock }
		server := func() time.Time { return clock.Add(skew) }
		fail := false
		r := NewTokenRequester(fakeTokens(&fail, server), time.Hour, now)
		r.jitter = func() float64 { return 0.5 }
		requests := 0
		for i := 0; i < 600; i++ { // ten minutes of passes, one a second
			before := r.NextRenewal()
			if _, err := r.Token(context.Background(), token.Need{Account: token.Account{Namespace: "kube-system", Name: "calico-node"}}); err != nil {
				t.Fatal(err)
			}
			if !r.NextRenewal().Equal(before) {
				requests++
			}
			clock = clock.Add(time.Second)
		}
		if requests != 1 {
			t.Fatalf("skew %v: %d token requests in ten minutes, want 1", skew, requests)
		}
	}
}

// TestTokenRequesterBacksOffARefusal: a request the API server refuses
// with no valid token to fall back on (RBAC does not let the agent mint a
// token for the account) is not made again at every ask: for ten minutes of
// asks, one a second, a handful of requests, further and further apart (up
// to maxRetry), each ask before the next one answered with the same error,
// and NextRenewal the moment of the next. Once RBAC allows it, the next
// retry gets the token.
func TestTokenRequesterBacksOffARefusal(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	c := fake.NewClientset()
	forbidden, requests := true, 0
	c.PrependReactor("create", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		requests++
		if forbidden {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, "canal", errors.New("RBAC: no rule"))
		}
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: "token"}}, nil
	})
	r := NewTokenRequester(c, time.Hour, now)
	need := token.Need{Account: token.Account{Namespace: "kube-system", Name: "canal"}}
	var last time.Time
	var gaps []time.Duration
	for range 600 {
		before := requests
		_, err := r.Token(context.Background(), need)
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "serviceaccounts/token rule") {
			t.Fatalf("ask: %v, want the API server's refusal with the RBAC hint", err)
		}
		if requests > before {
			if !last.IsZero() {
				gaps = append(gaps, clock.Sub(last))
			}
			last = clock
		}
		if !r.NextRenewal().After(clock) {
			t.Fatalf("after a refusal NextRenewal is %v, not ahead of %v", r.NextRenewal(), clock)
		}
		clock = clock.Add(time.Second)
	}
	if requests > 7 {
		t.Fatalf("%d requests in ten minutes of asks once a second", requests)
	}
	for i, g := range gaps {
		if g < minRenewal || g > maxRetry || (i > 0 && g < gaps[i-1]) {
			t.Fatalf("gaps between requests %v: want at least %v, growing, at most %v", gaps, minRenewal, maxRetry)
		}
	}
	forbidden = false
	clock = r.NextRenewal()
	if tok, err := r.Token(context.Background(), need); err != nil || tok.Value != "token" {
		t.Fatalf("after the RBAC fix, at the next retry: %v %v", tok, err)
	}
}
