package controlplane

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// TestControlPlane runs the scenarios against one control plane, in order,
// because starting one costs several seconds.
func TestControlPlane(t *testing.T) {
	begin := time.Now()
	cp := StartT(t)
	t.Logf("Start took %v", time.Since(begin))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var oldToken string
	t.Run("TokenSecretPopulatedByKCM", func(t *testing.T) {
		if _, err := cp.TokenFor(ctx, "kube-system", "calico-node", 0); err != nil { // creates the SA
			t.Fatal(err)
		}
		s := createTokenSecret(ctx, t, cp, "kube-system", "calico-node-token-abc12", "calico-node")
		if len(s.Data[corev1.ServiceAccountRootCAKey]) == 0 {
			t.Fatal("token secret has no ca.crt")
		}
		if got := string(s.Data[corev1.ServiceAccountNamespaceKey]); got != "kube-system" {
			t.Fatalf("token secret namespace = %q", got)
		}
		oldToken = string(s.Data[corev1.ServiceAccountTokenKey])
		// KCM-populated Secrets carry legacy tokens with the fixed legacy issuer.
		if iss := tokenIssuer(t, oldToken); iss != "kubernetes/serviceaccount" {
			t.Fatalf("secret token issuer = %q, want kubernetes/serviceaccount", iss)
		}
		if got := whoAmI(ctx, t, cp.ConfigForToken(oldToken)); got != "system:serviceaccount:kube-system:calico-node" {
			t.Fatalf("token authenticates as %q", got)
		}
	})

	t.Run("RestartRotatesSigningKey", func(t *testing.T) {
		if oldToken == "" {
			t.Fatal("previous subtest did not produce a token")
		}
		begin := time.Now()
		if err := cp.RestartAPIServer(ctx, true); err != nil {
			t.Fatal(err)
		}
		t.Logf("RestartAPIServer(rotate) took %v", time.Since(begin))
		_, err := mustClient(t, cp.ConfigForToken(oldToken)).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Fatalf("old token after rotation: want Unauthorized, got %v", err)
		}
		tok, err := cp.TokenFor(ctx, "kube-system", "calico-node", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got := whoAmI(ctx, t, cp.ConfigForToken(tok)); got != "system:serviceaccount:kube-system:calico-node" {
			t.Fatalf("TokenFor token authenticates as %q", got)
		}
		if iss := tokenIssuer(t, tok); iss != serviceAccountIssuer {
			t.Fatalf("TokenFor token issuer = %q, want %q", iss, serviceAccountIssuer)
		}
		s := createTokenSecret(ctx, t, cp, "kube-system", "calico-node-token-new01", "calico-node")
		if got := whoAmI(ctx, t, cp.ConfigForToken(string(s.Data[corev1.ServiceAccountTokenKey]))); got != "system:serviceaccount:kube-system:calico-node" {
			t.Fatalf("new secret token authenticates as %q", got)
		}
	})

	t.Run("OutageSamePort", func(t *testing.T) {
		host := cp.Host()
		if !strings.HasPrefix(host, "127.0.0.1:") {
			t.Fatalf("Host() = %q, want 127.0.0.1:PORT", host)
		}
		begin := time.Now()
		if err := cp.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		t.Logf("StopAPIServer took %v", time.Since(begin))
		if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
			t.Fatal("API server still answers after StopAPIServer")
		}
		begin = time.Now()
		if err := cp.StartAPIServer(ctx, false); err != nil {
			t.Fatal(err)
		}
		t.Logf("StartAPIServer took %v", time.Since(begin))
		if cp.Host() != host {
			t.Fatalf("Host changed from %s to %s", host, cp.Host())
		}
		if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("admin client after restart: %v", err)
		}
	})

	t.Run("RBACForbids", func(t *testing.T) {
		tok, err := cp.TokenFor(ctx, "default", "nobody", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = mustClient(t, cp.ConfigForToken(tok)).CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("listing kube-system secrets as nobody: want Forbidden, got %v", err)
		}
	})

	t.Run("WriteKubeconfig", func(t *testing.T) {
		dir := t.TempDir()
		tok, err := cp.TokenFor(ctx, "kube-system", "calico-node", 0)
		if err != nil {
			t.Fatal(err)
		}
		for name, cfg := range map[string]*rest.Config{"admin": cp.Config, "token": cp.ConfigForToken(tok)} {
			path := filepath.Join(dir, name+".kubeconfig")
			if err := cp.WriteKubeconfig(path, cfg); err != nil {
				t.Fatal(err)
			}
			loaded, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mustClient(t, loaded).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s kubeconfig: %v", name, err)
			}
		}
	})
}

// TestStopIsFastAndComplete checks that Stop takes under 5 s and removes state.
func TestStopIsFastAndComplete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := Start(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	dir := cp.dir
	begin := time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("Stop took %v, want < 5s", took)
	} else {
		t.Logf("Stop took %v", took)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir %s still exists: %v", dir, err)
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestMissingBinaries checks the error that tells developers what to run.
func TestMissingBinaries(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(binDirEnv, dir)
	_, err := Start(context.Background(), Options{})
	want := `control plane binaries not found in ` + dir + `: run "make control-plane"`
	if err == nil || err.Error() != want {
		t.Fatalf("Start error = %v, want %q", err, want)
	}
}

// createTokenSecret creates a token Secret for sa and waits until
// kube-controller-manager has populated its token.
func createTokenSecret(ctx context.Context, t *testing.T, cp *ControlPlane, ns, name, sa string) *corev1.Secret {
	t.Helper()
	if _, err := cp.Client.CoreV1().Secrets(ns).Create(ctx, tokenSecret(ns, name, sa), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var s *corev1.Secret
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		s, err = cp.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return len(s.Data[corev1.ServiceAccountTokenKey]) > 0 && len(s.Data[corev1.ServiceAccountRootCAKey]) > 0, nil
	})
	if err != nil {
		t.Fatalf("token secret %s/%s not populated: %v", ns, name, err)
	}
	return s
}

// whoAmI returns the username the API server sees for cfg.
func whoAmI(ctx context.Context, t *testing.T, cfg *rest.Config) string {
	t.Helper()
	r, err := mustClient(t, cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	return r.Status.UserInfo.Username
}

// tokenIssuer returns the iss claim of a JWT without verifying it.
func tokenIssuer(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT: %q", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Iss
}

// mustClient builds a clientset or fails the test.
func mustClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
