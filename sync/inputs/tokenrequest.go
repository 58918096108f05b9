package inputs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NewTokenRequester gives bound tokens from the TokenRequest API for the
// CNI service account. now is injectable for tests; nil means time.Now.
func NewTokenRequester(client kubernetes.Interface, ttl time.Duration, now func() time.Time) *TokenRequester {
	if now == nil {
		now = time.Now
	}
	return &TokenRequester{client: client, ttl: ttl, now: now, jitter: rand.Float64}
}

// minRenewal is the least time between two token requests, whatever a
// token's claims, the clocks or the API server's verdicts say: no skew or
// broken server can make a hot loop.
const minRenewal = 10 * time.Second

// maxRetry caps the backoff of a request that failed with no valid token to
// fall back on.
const maxRetry = 5 * time.Minute

// TokenRequester keeps one bound token and renews it when 20–30 % of its
// lifetime is left, the moment drawn per process so a cluster's nodes do not
// renew at once; at once when the API server rejected it; and, when renewal
// fails, again with backoff while the current token is still valid. A
// request that fails with no valid token to fall back on (the API server
// refuses it: RBAC does not let the agent mint a token for the account) is
// not made again before its own backoff, from minRenewal doubling to
// maxRetry, however often a pass asks: until then Token returns the same
// error.
type TokenRequester struct {
	client  kubernetes.Interface
	account token.Account
	ttl     time.Duration
	now     func() time.Time
	jitter  func() float64

	mu          sync.Mutex
	lastRequest time.Time
	cur         token.Token
	expires     time.Time
	renewAt     time.Time
	failures    int
	// lastErr is the last request's error while no valid token is held;
	// it is returned until renewAt.
	lastErr error
}

// Token returns the current token for the need's account, renewing it when
// due.
//
// The schedule is kept on the node's clock alone: the lifetime is the one
// granted (the TokenRequest's expirationSeconds), counted from the moment of
// the request, never the server's expiry timestamp, so a server clock ahead
// of or behind the node cannot make a token look expired at birth.
func (r *TokenRequester) Token(ctx context.Context, need token.Need) (token.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if need.Account != r.account {
		r.account, r.cur, r.renewAt, r.expires = need.Account, token.Token{}, time.Time{}, time.Time{}
		r.failures, r.lastErr = 0, nil
	}
	now := r.now()
	if now.Before(r.renewAt) {
		if r.cur.Value != "" {
			return r.cur, nil
		}
		if r.lastErr != nil {
			return token.Token{}, r.lastErr // backing off: the same answer, no request
		}
	}
	r.lastRequest = now
	tok, lifetime, err := r.request(ctx)
	if err != nil {
		r.failures++
		if r.cur.Value != "" && now.Before(r.expires) {
			backoff := min(time.Duration(1<<min(r.failures, 6))*time.Second, time.Minute)
			r.renewAt = now.Add(max(backoff, minRenewal))
			return r.cur, nil // still valid: keep it and retry soon
		}
		r.cur, r.lastErr = token.Token{}, err
		r.renewAt = now.Add(min(minRenewal<<min(r.failures-1, 5), maxRetry))
		return token.Token{}, err
	}
	r.failures, r.lastErr = 0, nil
	r.cur, r.expires = tok, now.Add(lifetime)
	r.renewAt = now.Add(max(lifetime*7/10+time.Duration(float64(lifetime/10)*r.jitter()), minRenewal))
	return r.cur, nil
}

func (r *TokenRequester) request(ctx context.Context) (token.Token, time.Duration, error) {
	secs := int64(r.ttl / time.Second)
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	tr, err := r.client.CoreV1().ServiceAccounts(r.account.Namespace).CreateToken(ctx, r.account.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if apierrors.IsForbidden(err) {
		return token.Token{}, 0, fmt.Errorf("request a token for service account %s/%s: %w (the agent may create tokens only for the accounts its ClusterRole's serviceaccounts/token rule names)", r.account.Namespace, r.account.Name, err)
	}
	if err != nil {
		return token.Token{}, 0, fmt.Errorf("request a token for service account %s/%s: %w", r.account.Namespace, r.account.Name, err)
	}
	lifetime := r.ttl
	if s := tr.Spec.ExpirationSeconds; s != nil && *s > 0 {
		lifetime = time.Duration(*s) * time.Second // what the server granted
	}
	return token.Token{Value: tr.Status.Token, Source: token.SourceTokenRequest}, lifetime, nil
}

// NextRenewal is when Token will next ask for a new token: the renewal of
// the token held, or the retry of a request that failed.
func (r *TokenRequester) NextRenewal() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renewAt
}

// Invalidate asks for a new token as soon as the floor between requests
// allows: the API server rejected this one.
func (r *TokenRequester) Invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.Value == "" {
		return // no token to renew: a failed request keeps its backoff
	}
	r.renewAt = r.lastRequest.Add(minRenewal)
}
