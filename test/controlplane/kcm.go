package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// process is a child we start ourselves, in its own process group so that
// SIGKILL reaches everything it spawned.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result; valid after done is closed
}

// startProcess runs path with args, sending stdout and stderr to logPath.
func startProcess(name, path string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the child keeps its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has terminated.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group and waits until it has been reaped.
func (p *process) kill() error {
	if p == nil || p.exited() {
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("%s still alive %v after SIGKILL", p.name, killTimeout)
	}
}

// startKCM starts kube-controller-manager with only the service-account
// controllers and the current signing key, and waits until it populates a
// probe token Secret whose token the API server accepts.
func (c *ControlPlane) startKCM(ctx context.Context) error {
	controllers := "serviceaccount-token,serviceaccount"
	if c.nodes {
		controllers += "," + nodeControllers
	}
	args := []string{
		"--kubeconfig=" + c.kubecfg,
		"--controllers=" + controllers,
		"--service-account-private-key-file=" + c.keys.private,
		"--root-ca-file=" + c.caFile,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--v=2",
	}
	kcm, err := startProcess("kube-controller-manager", filepath.Join(c.binDir, "kube-controller-manager"),
		args, filepath.Join(c.dir, "kube-controller-manager.log"))
	if err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	c.kcm = kcm
	if err := c.probeKCM(ctx); err != nil {
		return fmt.Errorf("start kube-controller-manager: %w%s", err, logTail(kcm.logPath))
	}
	return nil
}

// probeKCM creates a throwaway service account and token Secret and waits
// until kube-controller-manager fills in a token that authenticates.
func (c *ControlPlane) probeKCM(ctx context.Context) error {
	ns := metav1.NamespaceDefault
	name := fmt.Sprintf("controlplane-probe-%d", time.Now().UnixNano())
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create probe service account: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = c.Client.CoreV1().Secrets(ns).Delete(cctx, name, metav1.DeleteOptions{})
		_ = c.Client.CoreV1().ServiceAccounts(ns).Delete(cctx, name, metav1.DeleteOptions{})
	}()
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, tokenSecret(ns, name, name), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create probe token secret: %w", err)
	}
	var token string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		if c.kcm.exited() {
			return false, fmt.Errorf("kube-controller-manager exited: %v", c.kcm.err)
		}
		s, err := c.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = string(s.Data[corev1.ServiceAccountTokenKey])
		return token != "", nil
	})
	if err != nil {
		return fmt.Errorf("wait for probe token secret to be populated: %w", err)
	}
	client, err := newClient(c.ConfigForToken(token))
	if err != nil {
		return err
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("probe token rejected: %w", err)
	}
	if want := "system:serviceaccount:" + ns + ":" + name; review.Status.UserInfo.Username != want {
		return fmt.Errorf("probe token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	return nil
}

// tokenSecret is a token Secret for kube-controller-manager to populate.
func tokenSecret(namespace, name, serviceAccount string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: serviceAccount},
		},
		Type: corev1.SecretTypeServiceAccountToken,
	}
}

// ensureServiceAccount creates the namespace and service account if missing.
func (c *ControlPlane) ensureServiceAccount(ctx context.Context, namespace, name string) error {
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// logTail returns the last lines of a log file formatted for appending to an
// error, or "" if it cannot be read.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	const maxBytes = 4096
	if len(data) > maxBytes {
		data = data[len(data)-maxBytes:]
		if i := strings.IndexByte(string(data), '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return fmt.Sprintf("\n--- tail of %s ---\n%s", filepath.Base(path), strings.TrimRight(string(data), "\n"))
}
