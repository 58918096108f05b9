package inputs

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TokenAccepted asks the API server, with the token itself, who it is: a
// SelfSubjectReview that any valid token may make. It returns false when the
// server rejects the token and nil when it could not tell (server down).
func TokenAccepted(ctx context.Context, cfg *rest.Config, token string) *bool {
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = token
	// A client of its own (the request must carry this token and nothing
	// else), whose connection is closed after the one request: left idle,
	// each check's connection stayed open for net/http's 90 s.
	httpClient, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil
	}
	defer httpClient.CloseIdleConnections()
	client, err := kubernetes.NewForConfigAndClient(c, httpClient)
	if err != nil {
		return nil
	}
	_, err = client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case err == nil:
		return ptr(true)
	case apierrors.IsUnauthorized(err):
		return ptr(false)
	default:
		return nil
	}
}

func ptr[T any](v T) *T { return &v }
