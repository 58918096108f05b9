package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// migrationLabel is the node label of the tigera operator's migration from
// a manifest install: the operator labels every node pre-operator, gives
// kube-system/calico-node that nodeSelector, creates
// calico-system/calico-node with migrated, and relabels the nodes one by
// one.
const migrationLabel = "projectcalico.org/operator-node-migration"

// migrationSelector adds the migration label to the DaemonSet's
// nodeSelector, as the operator does.
func migrationSelector(t testing.TB, value string) installEdit {
	return func(u *unstructured.Unstructured) bool {
		if u.GetKind() == "DaemonSet" {
			must(t, unstructured.SetNestedField(u.Object, value, "spec", "template", "spec", "nodeSelector", migrationLabel))
		}
		return true
	}
}

// labelNode gives the env's Node the labels a kubelet and the migration
// give it.
func (e *env) labelNode(value string) {
	e.t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"kubernetes.io/os":"linux",%q:%q}}}`, migrationLabel, value)
	_, err := e.client.CoreV1().Nodes().Patch(e.ctx, e.node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	must(e.t, err)
}

// TestDiscoveryOperatorMigration: in the middle of the tigera operator's
// migration both kube-system/calico-node (nodes labelled pre-operator) and
// calico-system/calico-node (nodes labelled migrated) exist. Each node
// renders the template of the DaemonSet that runs there and takes its CNI
// account, whether its pod is there yet or not; a token the old
// calico-node's refresher writes on a pre-operator node is its own account's
// and is left alone.
func TestDiscoveryOperatorMigration(t *testing.T) {
	pre := newInstallEnv(t, "kube-system")
	mig := newInstallEnv(t, "calico-system")
	pre.labelNode("pre-operator")
	mig.labelNode("migrated")
	pre.applyInstall("manifest-v3.32.yaml", cniHostPath(t, pre.net), migrationSelector(t, "pre-operator"))
	mig.applyInstall("operator-v3.32.yaml", cniHostPath(t, mig.net), migrationSelector(t, "migrated"), apiServerHere())

	// No pod yet on either node: the DaemonSet that would schedule there.
	for _, tc := range []struct {
		e           *env
		ns, cm, key string
	}{{pre, "kube-system", "calico-config", "cni_network_config"}, {mig, "calico-system", "cni-config", "config"}} {
		if code, out := tc.e.runNode(tc.e.nodeArgs("--once")...); code != 0 {
			t.Fatalf("%s: --once exit %d\n%s", tc.e.node, code, out)
		}
		code, rep := tc.e.driftJSON()
		if code != 0 || rep.Source == nil || rep.Source.DaemonSet != tc.ns+"/calico-node" || rep.Source.Pod != "" ||
			rep.Token.ServiceAccount != tc.ns+"/calico-cni-plugin" {
			t.Fatalf("%s: drift exit %d, source %+v, token %+v; want %s/calico-node's template and account", tc.e.node, code, rep.Source, rep.Token, tc.ns)
		}
		if who, _, err := tc.e.whoIsTokenOnDisk(); err != nil || who != saSubject(tc.ns, "calico-cni-plugin") {
			t.Fatalf("%s: the token written is %q (%v), want %s/calico-cni-plugin's", tc.e.node, who, err, tc.ns)
		}
		cm, err := tc.e.client.CoreV1().ConfigMaps(tc.ns).Get(tc.e.ctx, tc.cm, metav1.GetOptions{})
		must(t, err)
		want := strings.NewReplacer("__KUBERNETES_NODE_NAME__", tc.e.node, "__CNI_MTU__", cm.Data["veth_mtu"],
			"__KUBECONFIG_FILEPATH__", installCNIKubeconfig).Replace(cm.Data[tc.key])
		if conf := tc.e.read("10-calico.conflist"); conf != want {
			t.Errorf("%s: 10-calico.conflist is not what install-cni renders from %s/%s:\n got %q\nwant %q", tc.e.node, tc.ns, tc.cm, conf, want)
		}
	}

	// The old calico-node runs on the pre-operator node and its refresher
	// writes a token of its own account: the agent (policy guard) judges it
	// healthy and leaves it, pass after pass.
	pre.createNodePod(pre.daemonSet("kube-system", "calico-node"), nil)
	a := pre.startNodeAgent()
	pre.waitStatus("inputs from the pre-operator pod", func(r nodeReport) error {
		if r.Source == nil || r.Source.DaemonSet != "kube-system/calico-node" || r.Source.Pod == "" {
			return fmt.Errorf("source %+v", r.Source)
		}
		return nil
	})
	tr, err := pre.client.CoreV1().ServiceAccounts("kube-system").CreateToken(pre.ctx, "calico-cni-plugin", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	server, ca, _, err := pre.kubeconfigOnDisk()
	must(t, err)
	writes, err := a.Metric("calico_cni_sync_writes_total", "calico-kubeconfig")
	must(t, err)
	passes, err := a.Metric("calico_cni_sync_reconciles_total")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(pre.net, "calico-kubeconfig"), tokenWatchKubeconfig(pre, server, ca, tr.Status.Token), 0o600))
	// Two passes after the refresher's write: the one its write triggers,
	// and one more (a ConfigMap the agent watches is touched).
	pre.eventually(30*time.Second, "a pass after the refresher's write", func() error {
		if n, err := a.Metric("calico_cni_sync_reconciles_total"); err != nil || n < passes+1 {
			return fmt.Errorf("passes %v (%v)", n, err)
		}
		return nil
	})
	_, err = pre.client.CoreV1().ConfigMaps("kube-system").Patch(pre.ctx, "calico-config", types.MergePatchType, []byte(`{"metadata":{"annotations":{"e2e/touched":"1"}}}`), metav1.PatchOptions{})
	must(t, err)
	pre.eventually(30*time.Second, "another pass", func() error {
		if n, err := a.Metric("calico_cni_sync_reconciles_total"); err != nil || n < passes+2 {
			return fmt.Errorf("passes %v (%v)", n, err)
		}
		return nil
	})
	if _, tok, err := pre.whoIsTokenOnDisk(); err != nil || tok != tr.Status.Token {
		t.Fatalf("the old calico-node's token was replaced (%v)", err)
	}
	if n, err := a.Metric("calico_cni_sync_writes_total", "calico-kubeconfig"); err != nil || n != writes {
		t.Fatalf("calico-kubeconfig written %v times since the refresher's write (%v)", n-writes, err)
	}
	code, rep := pre.driftJSON()
	if code != 0 || rep.Token.ServiceAccount != "kube-system/calico-cni-plugin" || rep.Token.ManagedBy != "calico-node" {
		t.Fatalf("pre-operator node: drift exit %d, token %+v", code, rep.Token)
	}
}

// TestDiscoveryOperatorMigrationUnderDefaultRBAC: the same migration with
// the agent as its own ServiceAccount under the default manifests, which
// grant this node's pods in kube-system only. The agent may not list pods
// in calico-system: it judges calico-system/calico-node by its nodeSelector
// alone, so each node still takes its own DaemonSet's template and account
// and none reports Error; and it starts no pod informer there, whose refused
// list would be retried for as long as the agent runs.
func TestDiscoveryOperatorMigrationUnderDefaultRBAC(t *testing.T) {
	pre := newInstallEnv(t, "kube-system")
	mig := newInstallEnv(t, "calico-system")
	pre.labelNode("pre-operator")
	mig.labelNode("migrated")
	pre.applyInstall("manifest-v3.32.yaml", cniHostPath(t, pre.net), migrationSelector(t, "pre-operator"))
	mig.applyInstall("operator-v3.32.yaml", cniHostPath(t, mig.net), migrationSelector(t, "migrated"), apiServerHere())
	deploy(t, pre.ctx, manifestsBase)

	caFile := filepath.Join(pre.dir, "ca.crt")
	must(t, os.WriteFile(caFile, cp.CAData(), 0o600))
	envs := []struct {
		e  *env
		ns string
	}{{pre, "kube-system"}, {mig, "calico-system"}}
	proxies := map[*env]*countingProxy{}
	for _, tc := range envs {
		proxies[tc.e] = tc.e.agentThroughProxy()
		if code, out := tc.e.runNode(tc.e.nodeArgs("--once", "--ca-file", caFile)...); code != 0 {
			t.Fatalf("%s: --once under the default manifests: exit %d\n%s", tc.e.node, code, out)
		}
		code, rep, logs := tc.e.driftJSONLogs("--ca-file", caFile)
		if n := strings.Count(logs, "may not list this node's pods"); n != 1 || !strings.Contains(logs, "namespace=calico-system") {
			t.Errorf("%s: drift logged %d lines on the pods it may not list, want one naming calico-system:\n%s", tc.e.node, n, logs)
		}
		if code != 0 || rep.Source == nil || rep.Source.DaemonSet != tc.ns+"/calico-node" ||
			rep.Token.ServiceAccount != tc.ns+"/calico-cni-plugin" {
			t.Fatalf("%s: drift exit %d, source %+v, token %+v; want %s/calico-node's template and account", tc.e.node, code, rep.Source, rep.Token, tc.ns)
		}
		if who, _, err := tc.e.whoIsTokenOnDisk(); err != nil || who != saSubject(tc.ns, "calico-cni-plugin") {
			t.Fatalf("%s: the token written is %q (%v), want %s/calico-cni-plugin's", tc.e.node, who, err, tc.ns)
		}
	}
	if n := proxies[mig].count("GET pods 403"); n == 0 {
		t.Fatalf("the agent was allowed to list pods in calico-system: the default manifests no longer show the defect (%s)", proxies[mig].snapshot())
	}

	// The agent on the migrated node: in sync, no failed pass, and the
	// refused list is not retried as passes go by (no informer keeps
	// trying it; the refusal is the answer until the resync period).
	a := mig.startNodeAgent("--ca-file", caFile)
	mig.waitStatus("calico-system/calico-node's template, in sync", func(r nodeReport) error {
		if r.Source == nil || r.Source.DaemonSet != "calico-system/calico-node" {
			return fmt.Errorf("source %+v", r.Source)
		}
		for _, f := range r.Files {
			if f.State != "InSync" {
				return fmt.Errorf("%s is %s", f.Path, f.State)
			}
		}
		return nil
	})
	refused := proxies[mig].count("GET pods 403")
	for i := range 3 {
		passes, err := a.Metric("calico_cni_sync_reconciles_total")
		must(t, err)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"e2e/touched":"%d"}}}`, i)
		_, err = mig.client.CoreV1().ConfigMaps("calico-system").Patch(mig.ctx, "cni-config", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		must(t, err)
		mig.eventually(30*time.Second, "a pass after the ConfigMap changed", func() error {
			if n, err := a.Metric("calico_cni_sync_reconciles_total"); err != nil || n < passes+1 {
				return fmt.Errorf("passes %v (%v)", n, err)
			}
			return nil
		})
	}
	if n, err := a.Metric("calico_cni_sync_reconciles_total", `result="error"`); err != nil || n != 0 {
		t.Fatalf("failed passes: %v %v", n, err)
	}
	if n := proxies[mig].count("GET pods 403"); n != refused {
		t.Fatalf("the refused list of pods was made %d more times over three passes (%s)", n-refused, proxies[mig].snapshot())
	}
}

// driftJSONLogs runs drift -o json with the node's environment, its report
// (stdout) apart from its log (stderr).
func (e *env) driftJSONLogs(extra ...string) (int, nodeReport, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, binary, e.nodeArgs(append([]string{"drift", "-o", "json"}, extra...)...)...)
	cmd.Env = e.nodeEnv()
	var out, logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &logs
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.noTokenIn(out.String() + logs.String())
	var rep nodeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		e.t.Fatalf("drift -o json: exit %d, %v\n%s\n%s", code, err, out.String(), logs.String())
	}
	return code, rep, logs.String()
}
