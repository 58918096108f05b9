package sync

import (
	"context"
	"fmt"
	"math/rand/v2"
	gosync "sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NewTokenRequester gives bound tokens from the TokenRequest API for the
// service account. now is injectable for tests; nil means time.Now.
func NewTokenRequester(client kubernetes.Interface, namespace, serviceAccount string, ttl time.Duration, now func() time.Time) *TokenRequester {
	if now == nil {
		now = time.Now
	}
	return &TokenRequester{client: client, namespace: namespace, serviceAccount: serviceAccount, ttl: ttl, now: now, jitter: rand.Float64}
}

// TokenRequester keeps one bound token and renews it when 20–30 % of its
// lifetime is left, the moment drawn per process so a cluster's nodes do not
// renew at once; at once when the API server rejected it; and, when renewal
// fails, again with backoff while the current token is still valid.
type TokenRequester struct {
	client         kubernetes.Interface
	namespace      string
	serviceAccount string
	ttl            time.Duration
	now            func() time.Time
	jitter         func() float64

	mu       gosync.Mutex
	cur      Token
	expires  time.Time
	renewAt  time.Time
	failures int
}

// Token returns the current token, renewing it when due.
func (r *TokenRequester) Token(ctx context.Context) (Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.cur.Value != "" && now.Before(r.renewAt) {
		return r.cur, nil
	}
	tok, exp, err := r.request(ctx)
	if err != nil {
		r.failures++
		backoff := min(time.Duration(1<<min(r.failures, 6))*time.Second, time.Minute)
		if r.cur.Value != "" && now.Before(r.expires) {
			r.renewAt = now.Add(backoff)
			return r.cur, nil // still valid: keep it and retry soon
		}
		return Token{}, err
	}
	r.failures = 0
	lifetime := exp.Sub(now)
	r.cur, r.expires = tok, exp
	r.renewAt = now.Add(lifetime*7/10 + time.Duration(float64(lifetime/10)*r.jitter()))
	return r.cur, nil
}

func (r *TokenRequester) request(ctx context.Context) (Token, time.Time, error) {
	secs := int64(r.ttl / time.Second)
	tr, err := r.client.CoreV1().ServiceAccounts(r.namespace).CreateToken(ctx, r.serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return Token{}, time.Time{}, fmt.Errorf("request token for service account %s/%s: %w", r.namespace, r.serviceAccount, err)
	}
	exp := tr.Status.ExpirationTimestamp.Time
	if exp.IsZero() {
		exp = r.now().Add(r.ttl)
	}
	return Token{Value: tr.Status.Token, Source: SourceTokenRequest}, exp, nil
}

// NextRenewal is when Token will next ask for a new token.
func (r *TokenRequester) NextRenewal() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renewAt
}

// Invalidate forgets the token: the API server rejected it.
func (r *TokenRequester) Invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renewAt = time.Time{}
}
