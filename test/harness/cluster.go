package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Eventually waits until check passes, checking every 20 ms, and fails tb
// with check's last word after timeout.
func Eventually(tb testing.TB, ctx context.Context, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	})
	if err != nil {
		tb.Fatalf("%s: not within %s: %v", what, timeout, last)
	}
}

// NewTokenSecret creates a legacy token Secret for calico-node in ns and
// waits until the real token controller has populated it.
func NewTokenSecret(tb testing.TB, ctx context.Context, client kubernetes.Interface, ns, name string) {
	tb.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "calico-node"}},
		Type: corev1.SecretTypeServiceAccountToken}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	Eventually(tb, ctx, time.Minute, "token Secret populated", func() error {
		got, err := client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.Data["token"]) == 0 || len(got.Data["ca.crt"]) == 0 {
			return fmt.Errorf("not populated yet")
		}
		return nil
	})
}
