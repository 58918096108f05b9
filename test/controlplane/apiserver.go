package controlplane

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	// serviceAccountIssuer matches what real clusters use, so tokens look real.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// readyTimeout bounds every readiness poll.
	readyTimeout = 60 * time.Second
	// killTimeout bounds how long we wait for a SIGKILLed process to be reaped.
	killTimeout = 5 * time.Second
)

// StopAPIServer kills the API server only (etcd and kube-controller-manager
// keep running), so tests can observe how clients behave during an outage.
func (c *ControlPlane) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("stop kube-apiserver: control plane is stopped")
	}
	begin := time.Now()
	if err := c.killAPIServer(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	c.logf("controlplane: kube-apiserver killed in %v", time.Since(begin).Round(time.Millisecond))
	return nil
}

// StartAPIServer starts the API server again on the same port with the same
// serving certificate, so existing clients reconnect to the same address.
// kube-controller-manager is restarted with it and probed, so the control
// plane is whole when StartAPIServer returns: left alone, its informers would
// wait out client-go's reflector backoff, up to a minute after a long outage,
// before token Secrets were populated again.
// With rotateSigningKey it first generates a new service-account signing key:
// the API server then only trusts the new key (tokens signed with the old one
// are rejected) and kube-controller-manager signs new token Secrets with it.
func (c *ControlPlane) StartAPIServer(ctx context.Context, rotateSigningKey bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("start kube-apiserver: control plane is stopped")
	}
	if c.apiRunning {
		return errors.New("start kube-apiserver: already running")
	}
	begin := time.Now()
	// Stopped before the API server is back, so that the old controller
	// manager never signs anything with an old key.
	if err := c.kcm.kill(); err != nil {
		return fmt.Errorf("stop kube-controller-manager: %w", err)
	}
	if rotateSigningKey {
		keys, err := newSAKeys(c.dir, c.keys.generation+1)
		if err != nil {
			return err
		}
		c.keys = keys
		c.keys.configure(c.plane.APIServer.Configure())
	}
	c.apiRunning = true // from here on a process may exist and must be killed
	if err := c.plane.APIServer.Start(); err != nil {
		_ = c.killAPIServer()
		return fmt.Errorf("start kube-apiserver: %w%s", err, logTail(c.apiLog))
	}
	if err := c.waitAPIServerReady(ctx); err != nil {
		return fmt.Errorf("start kube-apiserver: %w%s", err, logTail(c.apiLog))
	}
	c.logf("controlplane: kube-apiserver ready on %s after %v", c.host, time.Since(begin).Round(time.Millisecond))
	if err := c.startKCM(ctx); err != nil {
		return err
	}
	if rotateSigningKey {
		c.logf("controlplane: signing key rotated to generation %d in %v", c.keys.generation, time.Since(begin).Round(time.Millisecond))
	}
	return nil
}

// RestartAPIServer is StopAPIServer followed by StartAPIServer; see
// StartAPIServer for rotateSigningKey.
func (c *ControlPlane) RestartAPIServer(ctx context.Context, rotateSigningKey bool) error {
	if err := c.StopAPIServer(); err != nil {
		return err
	}
	return c.StartAPIServer(ctx, rotateSigningKey)
}

// waitAPIServerReady polls /readyz and the default namespace (created
// asynchronously on first start) until both answer.
func (c *ControlPlane) waitAPIServerReady(ctx context.Context) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		if _, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			last = err
			return false, nil
		}
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			last = err
			if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) {
				return false, err
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for readiness: %w (last error: %v)", err, last)
	}
	return nil
}

// killAPIServer SIGKILLs the kube-apiserver process group started by envtest
// and waits until it has been reaped, so that its port is free again.
// envtest's own Stop sends SIGTERM and waits for a graceful drain, which
// takes far too long for tests.
func (c *ControlPlane) killAPIServer() error {
	if c.plane == nil || c.plane.APIServer == nil {
		return nil
	}
	if !c.apiRunning {
		return nil // already reaped; never signal a possibly reused pid
	}
	c.apiRunning = false
	pid, err := envtestPID(c.plane.APIServer)
	if err != nil || pid == 0 {
		return err
	}
	// envtest starts its processes with Setpgid, so -pid is the whole group.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	// envtest's goroutine reaps the process; wait until the pid is gone.
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, killTimeout, true,
		func(context.Context) (bool, error) { return !processAlive(pid), nil })
	if err != nil {
		return fmt.Errorf("pid %d still alive %v after SIGKILL", pid, killTimeout)
	}
	return nil
}

// processAlive reports whether pid exists (including as an unreaped zombie).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// envtestPID digs the pid out of envtest's unexported process state
// (processState.Cmd.Process.Pid); envtest offers no other way to SIGKILL.
// It returns 0 if the process was never started.
func envtestPID(component any) (int, error) {
	v := reflect.ValueOf(component)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, nil
		}
		v = v.Elem()
	}
	ps := v.FieldByName("processState")
	if !ps.IsValid() || ps.Kind() != reflect.Pointer {
		return 0, fmt.Errorf("envtest %T has no processState field: update envtestPID", component)
	}
	if ps.IsNil() {
		return 0, nil
	}
	cmd := ps.Elem().FieldByName("Cmd")
	if !cmd.IsValid() || cmd.Kind() != reflect.Pointer {
		return 0, fmt.Errorf("envtest process state has no Cmd field: update envtestPID")
	}
	if cmd.IsNil() {
		return 0, nil
	}
	proc := cmd.Elem().FieldByName("Process")
	if proc.IsNil() {
		return 0, nil
	}
	return int(proc.Elem().FieldByName("Pid").Int()), nil
}
