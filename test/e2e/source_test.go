package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestAgentFindsTheDaemonSetCreatedAfterIt: the agent, started with no
// input flag before the tigera operator has created calico-node's
// DaemonSet, reports the pass it cannot make; once the DaemonSet exists it
// takes its inputs from it, without a restart.
func TestAgentFindsTheDaemonSetCreatedAfterIt(t *testing.T) {
	e := newInstallEnv(t, "calico-system")
	e.requireNoDaemonSet("calico-system", "calico-node")
	e.requireNoDaemonSet("kube-system", "calico-node")
	e.requireNoDaemonSet("kube-system", "canal")
	notDaemonSet := func(u *unstructured.Unstructured) bool { return u.GetKind() != "DaemonSet" }
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net), notDaemonSet, apiServerHere())
	a := e.launchAgentWith(e.nodeEnv(), e.node, e.net,
		append([]string{binary}, append(e.nodeArgs("--resync-period", "2s"), "-v", "1")...))
	e.waitStatus("a pass reported with no DaemonSet", func(r nodeReport) error {
		if len(r.Files) == 0 || r.Files[0].State != "Error" {
			return fmt.Errorf("files %+v", r.Files)
		}
		return nil
	})

	onlyDaemonSet := func(u *unstructured.Unstructured) bool { return u.GetKind() == "DaemonSet" }
	e.applyInstall("operator-v3.32.yaml", cniHostPath(t, e.net), onlyDaemonSet, apiServerHere())
	e.waitStatus("inputs from the DaemonSet created after the agent", func(r nodeReport) error {
		if s := r.Source; s == nil || s.Kind != "daemonset" || s.DaemonSet != "calico-system/calico-node" {
			return fmt.Errorf("source %+v", r.Source)
		}
		for _, f := range r.Files {
			if f.State != "InSync" {
				return fmt.Errorf("%s is %s", f.Path, f.State)
			}
		}
		return nil
	})
	if err := a.probe("/healthz"); err != nil {
		t.Fatal(err)
	}
}

// TestAgentStartsWithoutTheAPIServer: an agent whose API server does not
// answer (a node rebooted while the control plane is down) starts, serves
// its probes, reports the error in its status file and keeps running: no
// crash loop, and the files are left as they are.
func TestAgentStartsWithoutTheAPIServer(t *testing.T) {
	e := newInstallEnv(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := ln.Addr().String()
	must(t, ln.Close())
	kc := clientcmdapi.NewConfig()
	kc.Clusters["dead"] = &clientcmdapi.Cluster{Server: "https://" + dead, InsecureSkipTLSVerify: true}
	kc.AuthInfos["dead"] = &clientcmdapi.AuthInfo{Token: "not-a-token"}
	kc.Contexts["dead"] = &clientcmdapi.Context{Cluster: "dead", AuthInfo: "dead"}
	kc.CurrentContext = "dead"
	e.kubeconfig = filepath.Join(e.dir, "dead.kubeconfig")
	must(t, clientcmd.WriteToFile(*kc, e.kubeconfig))
	must(t, os.WriteFile(filepath.Join(e.net, "10-calico.conflist"), []byte(`{"name": "k8s-pod-network"}`), 0o600))

	a := e.launchAgentWith(e.nodeEnv(), e.node, e.net, append([]string{binary}, append(e.nodeArgs(), "-v", "1")...))
	e.waitStatus("the unreachable API server reported", func(r nodeReport) error {
		if len(r.Files) == 0 || r.Files[0].State != "Error" {
			return fmt.Errorf("files %+v", r.Files)
		}
		return nil
	})
	// It keeps running: alive by its probe, and past at least one retry of
	// its report.
	e.eventually(30*time.Second, "a report retried", func() error {
		if strings.Count(a.Output(), "reconcile failed") < 2 {
			return errors.New("no retry logged yet")
		}
		return nil
	})
	select {
	case err := <-a.Done:
		a.Done <- err
		t.Fatalf("the agent exited: %v\n%s", err, tail(a.Output()))
	default:
	}
	if err := a.probe("/healthz"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.net, "10-calico.conflist")); string(b) != `{"name": "k8s-pod-network"}` {
		t.Fatalf("the file was touched: %q", b)
	}
}
