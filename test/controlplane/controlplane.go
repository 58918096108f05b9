// Package controlplane starts a real Kubernetes control plane on loopback for
// integration tests: etcd and kube-apiserver (through envtest) plus a
// kube-controller-manager running only the service-account controllers, so
// that tests exercise real token signing, token Secrets, RBAC and API server
// outages instead of fakes.
//
// The binaries are expected in test/bin of this module (or in
// $CONTROLPLANE_BIN_DIR); they are built by "make control-plane".
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options tune Start; the zero value is fine.
type Options struct {
	// Logf receives progress messages (e.g. t.Logf) so that a slow or
	// failing start can be diagnosed from the test log. Nil discards them.
	Logf func(format string, args ...any)
	// APIServerFlags are extra kube-apiserver flags (name without dashes to
	// value, e.g. "audit-log-path"), set after the defaults and kept across
	// API server restarts. Nil adds none.
	APIServerFlags map[string]string
	// Nodes prepares the control plane for real kubelets: the admission
	// plugins and controllers DaemonSets and pod tokens need, kube-scheduler,
	// and a serving certificate valid for the `kubernetes` Service (ServiceIP).
	Nodes bool
}

// ControlPlane is a running etcd + kube-apiserver + kube-controller-manager.
// It exists so that integration tests can talk to a real API server with real
// authentication, authorization and service-account token handling, and can
// simulate API server outages and signing-key rotations.
type ControlPlane struct {
	// Config is an admin (system:masters) client-certificate config, so
	// tests can set up any state they need without RBAC getting in the way.
	Config *rest.Config
	// Client is an admin clientset built from Config.
	Client kubernetes.Interface

	logf    func(format string, args ...any)
	binDir  string
	dir     string // temp dir holding all state; removed by Stop
	host    string // 127.0.0.1:PORT
	caData  []byte // PEM of the CA that signed the serving cert
	caFile  string // caData on disk, for kube-controller-manager --root-ca-file
	kubecfg string // admin kubeconfig for kube-controller-manager

	mu         sync.Mutex // serialises Stop/StopAPIServer/StartAPIServer
	plane      *envtest.ControlPlane
	logs       []*os.File
	apiLog     string
	apiRunning bool // a kube-apiserver process may exist
	keys       saKeys
	kcm        *process
	scheduler  *process // with Options.Nodes
	nodes      bool     // Options.Nodes
	stopped    bool
	apiFlags   map[string]string // Options.APIServerFlags
}

// StartT starts a control plane for a test and registers Stop with
// t.Cleanup, failing the test (never skipping it) if the control plane
// cannot be started.
func StartT(t testing.TB) *ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := Start(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

// Start launches etcd, kube-apiserver and kube-controller-manager and returns
// once the API server is ready and the controller manager has populated a
// probe token Secret. On error everything already started is torn down.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, retErr error) {
	begin := time.Now()
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "controlplane-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	c := &ControlPlane{logf: opts.Logf, binDir: binDir, dir: dir, apiFlags: opts.APIServerFlags, nodes: opts.Nodes}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	defer func() {
		if retErr != nil {
			_ = c.Stop()
		}
	}()

	if c.keys, err = newSAKeys(dir, 1); err != nil {
		return nil, err
	}
	if err := c.startEtcdAndAPIServer(); err != nil {
		return nil, err
	}
	if err := c.waitAPIServerReady(ctx); err != nil {
		return nil, fmt.Errorf("start kube-apiserver: %w%s", err, logTail(c.apiLog))
	}
	c.logf("controlplane: kube-apiserver ready on %s after %v", c.host, time.Since(begin).Round(time.Millisecond))
	if err := c.startKCM(ctx); err != nil {
		return nil, err
	}
	if c.nodes {
		if err := c.startScheduler(); err != nil {
			return nil, err
		}
	}
	c.logf("controlplane: started in %v (state in %s)", time.Since(begin).Round(time.Millisecond), dir)
	return c, nil
}

// startEtcdAndAPIServer starts etcd and the first kube-apiserver through
// envtest and derives the admin config, host and CA from it.
func (c *ControlPlane) startEtcdAndAPIServer() error {
	etcdLog, err := c.openLog("etcd.log")
	if err != nil {
		return err
	}
	apiLog, err := c.openLog("kube-apiserver.log")
	if err != nil {
		return err
	}
	c.apiLog = apiLog.Name()
	certDir := filepath.Join(c.dir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir: %w", err)
	}
	api := &envtest.APIServer{
		Path:         filepath.Join(c.binDir, "kube-apiserver"),
		CertDir:      certDir,
		StartTimeout: 90 * time.Second,
		StopTimeout:  3 * time.Second,
		Out:          apiLog,
		Err:          apiLog,
	}
	args := api.Configure()
	// envtest defaults to RBAC only; the product runs against Node,RBAC.
	args.Set("authorization-mode", "Node,RBAC")
	args.Set("service-account-issuer", serviceAccountIssuer)
	c.keys.configure(args)
	if c.nodes {
		if err := c.configureNodes(args, certDir); err != nil {
			return err
		}
		// envtest makes no serving certificate when one is there, and
		// connects its users with this CA.
		api.CA = c.CAData()
	}
	for name, value := range c.apiFlags {
		args.Set(name, value)
	}
	c.plane = &envtest.ControlPlane{
		Etcd: &envtest.Etcd{
			Path:         filepath.Join(c.binDir, "etcd"),
			DataDir:      filepath.Join(c.dir, "etcd"),
			StartTimeout: 60 * time.Second,
			StopTimeout:  3 * time.Second,
			Out:          etcdLog,
			Err:          etcdLog,
		},
		APIServer:   api,
		KubectlPath: filepath.Join(c.binDir, "kubectl"),
	}
	c.apiRunning = true // from here on a process may exist and must be killed
	if err := c.plane.Start(); err != nil {
		// envtest only sends SIGTERM on a start timeout; make sure nothing lingers.
		_ = c.killAPIServer()
		return fmt.Errorf("start etcd and kube-apiserver: %w%s", err, logTail(c.apiLog))
	}

	c.host = net.JoinHostPort(api.Address, api.Port)
	if !c.nodes {
		c.caData = append([]byte(nil), api.CA...)
	}
	c.caFile = filepath.Join(c.dir, "apiserver-ca.crt")
	if err := os.WriteFile(c.caFile, c.caData, 0o600); err != nil {
		return fmt.Errorf("write CA file: %w", err)
	}
	admin, err := c.plane.AddUser(envtest.User{Name: "controlplane-admin", Groups: []string{"system:masters"}},
		&rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return fmt.Errorf("provision admin user: %w", err)
	}
	c.Config = rest.CopyConfig(admin.Config())
	c.Config.Host = "https://" + c.host
	c.Config.CAData = c.CAData()
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("create admin client: %w", err)
	}
	c.kubecfg = filepath.Join(c.dir, "admin.kubeconfig")
	if err := c.WriteKubeconfig(c.kubecfg, c.Config); err != nil {
		return fmt.Errorf("write admin kubeconfig: %w", err)
	}
	return nil
}

// openLog creates a log file in the temp dir that lives until Stop.
func (c *ControlPlane) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	c.logs = append(c.logs, f)
	return f, nil
}

// Stop kills kube-controller-manager and kube-apiserver with SIGKILL (the API
// server drains slowly on SIGTERM), stops etcd and removes all temp state.
// It is safe to call more than once.
func (c *ControlPlane) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	begin := time.Now()
	var errs []error
	if err := c.scheduler.kill(); err != nil {
		errs = append(errs, fmt.Errorf("stop kube-scheduler: %w", err))
	}
	if c.kcm != nil {
		if err := c.kcm.kill(); err != nil {
			errs = append(errs, fmt.Errorf("stop kube-controller-manager: %w", err))
		}
	}
	if err := c.killAPIServer(); err != nil {
		errs = append(errs, fmt.Errorf("stop kube-apiserver: %w", err))
	}
	if c.plane != nil && c.plane.Etcd != nil {
		if err := c.plane.Etcd.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop etcd: %w", err))
		}
	}
	for _, f := range c.logs {
		_ = f.Close()
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove temp dir: %w", err))
	}
	c.logf("controlplane: stopped in %v", time.Since(begin).Round(time.Millisecond))
	return errors.Join(errs...)
}

// Host returns "127.0.0.1:PORT" of the API server; it does not change across
// API server restarts.
func (c *ControlPlane) Host() string { return c.host }

// CAData returns the PEM of the CA that signs the API server's serving
// certificate, for building clients and kubeconfigs that verify the server.
func (c *ControlPlane) CAData() []byte { return append([]byte(nil), c.caData...) }
