package sync

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NewTokenRequester gives a bound token from the TokenRequest API for the
// service account. now is injectable for tests; nil means time.Now.
func NewTokenRequester(client kubernetes.Interface, namespace, serviceAccount string, ttl time.Duration, now func() time.Time) *TokenRequester {
	if now == nil {
		now = time.Now
	}
	return &TokenRequester{client: client, namespace: namespace, serviceAccount: serviceAccount, ttl: ttl, now: now}
}

// TokenRequester asks the API server for bound tokens.
type TokenRequester struct {
	client         kubernetes.Interface
	namespace      string
	serviceAccount string
	ttl            time.Duration
	now            func() time.Time
}

// Token requests a new token.
func (r *TokenRequester) Token(ctx context.Context) (Token, error) {
	secs := int64(r.ttl / time.Second)
	tr, err := r.client.CoreV1().ServiceAccounts(r.namespace).CreateToken(ctx, r.serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return Token{}, fmt.Errorf("request token for service account %s/%s: %w", r.namespace, r.serviceAccount, err)
	}
	return Token{Value: tr.Status.Token, Source: SourceTokenRequest}, nil
}
