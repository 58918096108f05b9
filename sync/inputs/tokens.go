package inputs

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// TokenFromFile reads a token file (a projected token, or one an operator
// saved) at every call.
func TokenFromFile(path string) token.Source {
	return token.SourceFunc(func(context.Context, token.Need) (token.Token, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return token.Token{}, fmt.Errorf("read --token-file: %w", err)
		}
		t := strings.TrimSpace(string(data))
		if t == "" {
			return token.Token{}, fmt.Errorf("--token-file %s is empty", path)
		}
		if strings.Contains(t, "-----BEGIN") {
			return token.Token{}, fmt.Errorf("--token-file %s holds a PEM block, not a token: are --token-file and --ca-file swapped?", path)
		}
		return token.Token{Value: t, Source: token.SourceFile, File: path}, nil
	})
}

// TokenSecretSelector selects the Secrets a token can come from; the API
// server supports the type field selector for Secrets.
var TokenSecretSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)).String()

// PickTokenSecret chooses, among Secrets, the service account's newest token
// Secret (by creationTimestamp, then name) whose token is populated. That is
// how the token is followed when its Secret is deleted and recreated under
// another name.
func PickTokenSecret(secrets []*corev1.Secret, serviceAccount string) (*corev1.Secret, error) {
	var cands []*corev1.Secret
	for _, s := range secrets {
		if s.Type == corev1.SecretTypeServiceAccountToken &&
			s.Annotations[corev1.ServiceAccountNameKey] == serviceAccount &&
			len(s.Data[corev1.ServiceAccountTokenKey]) > 0 && s.DeletionTimestamp == nil {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no populated token Secret for service account %q (type %s, annotation %s)",
			serviceAccount, corev1.SecretTypeServiceAccountToken, corev1.ServiceAccountNameKey)
	}
	sort.Slice(cands, func(i, j int) bool {
		ti, tj := cands[i].CreationTimestamp, cands[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return cands[i].Name > cands[j].Name
	})
	return cands[0], nil
}

// TokenFromSecret turns a token Secret into a Token.
func TokenFromSecret(s *corev1.Secret) (token.Token, error) {
	t := strings.TrimSpace(string(s.Data[corev1.ServiceAccountTokenKey]))
	if t == "" {
		return token.Token{}, fmt.Errorf("token Secret %s/%s has no token yet", s.Namespace, s.Name)
	}
	return token.Token{Value: t, Source: token.SourceSecret, Secret: s.Name, CA: s.Data[corev1.ServiceAccountRootCAKey]}, nil
}

// SecretTokenFromAPI reads the token with one request: a GET of the pinned
// Secret, or a LIST of the account's namespace's token Secrets.
func SecretTokenFromAPI(client kubernetes.Interface, pinned string) token.Source {
	return token.SourceFunc(func(ctx context.Context, need token.Need) (token.Token, error) {
		ctx, cancel := context.WithTimeout(ctx, APITimeout)
		defer cancel()
		namespace, serviceAccount := need.Account.Namespace, need.Account.Name
		if pinned != "" {
			s, err := client.CoreV1().Secrets(namespace).Get(ctx, pinned, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return token.Token{}, fmt.Errorf("--token-secret %s/%s not found", namespace, pinned)
			}
			if err != nil {
				return token.Token{}, fmt.Errorf("get Secret %s/%s: %w", namespace, pinned, err)
			}
			return TokenFromSecret(s)
		}
		list, err := client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{FieldSelector: TokenSecretSelector})
		if err != nil {
			return token.Token{}, fmt.Errorf("list token Secrets in %s: %w", namespace, err)
		}
		ptrs := make([]*corev1.Secret, len(list.Items))
		for i := range list.Items {
			ptrs[i] = &list.Items[i]
		}
		s, err := PickTokenSecret(ptrs, serviceAccount)
		if err != nil {
			return token.Token{}, err
		}
		return TokenFromSecret(s)
	})
}
