package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestSigningKeyRotation: after the API server restarts with a new signing
// key, the token on disk no longer authenticates and drift says so; the
// agent in secret mode reports TokenRejected within its check period, and
// follows the Secret the operator regenerates.
func TestSigningKeyRotation(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	if code, out := e.run(e.args("--once")...); code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}
	e.startAgent("--token-check-period", "2s")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")

	must(t, cp.RestartAPIServer(e.ctx, true))
	if _, err := e.whoIsKubeconfigOnDisk(); err == nil {
		t.Fatal("the old token still authenticates after the key rotation")
	}
	code, out := e.run(e.args("drift")...)
	if code != 1 || !strings.Contains(out, "accepted by the API server: false") {
		t.Fatalf("drift after the rotation: exit %d\n%s", code, out)
	}
	e.waitCondition(e.node, corev1.ConditionTrue, "TokenRejected", "delete the service account's token Secret")
	e.waitEvent(e.node, "TokenRejected", "rejects the token")

	e.regenerate("calico-node-token-after-rotation")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || !strings.HasSuffix(who, ":calico-node") {
		t.Fatalf("after regeneration the kubeconfig on disk is %q (%v)", who, err)
	}
}

// TestTokenRequestHealsItself: in tokenrequest mode a rotation of the
// signing key is healed by requesting a new token, with nobody's help.
func TestTokenRequestHealsItself(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent("--token-source", "tokenrequest", "--token-ttl", "1h", "--token-check-period", "2s")
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || !strings.HasSuffix(who, ":calico-node") {
		t.Fatalf("tokenrequest kubeconfig on disk: %q %v", who, err)
	}
	before := e.read("calico-kubeconfig")
	must(t, cp.RestartAPIServer(e.ctx, true))
	e.eventually(30*time.Second, "a new token that authenticates", func() error {
		if e.read("calico-kubeconfig") == before {
			return errorf("kubeconfig unchanged")
		}
		_, err := e.whoIsKubeconfigOnDisk()
		return err
	})
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	if a.metric("calico_cni_sync_token_accepted") != 1 {
		t.Error("token_accepted metric not 1")
	}
	if a.metric("calico_cni_sync_token_expiry_timestamp_seconds") < float64(time.Now().Add(50*time.Minute).Unix()) {
		t.Error("token expiry metric not set from the token's claims")
	}
}

// TestAPIServerOutage: with the API server down for 30 s the file is left
// untouched and the agent stays alive; once it is back, a ConfigMap change
// reaches the file. "Once" is client-go's reflector backoff: after 30 s of
// failures the next list may be up to a minute away (30 s cap, jitter 1.0),
// which spreads a cluster's nodes over that minute rather than have them all
// relist the moment the API server returns.
func TestAPIServerOutage(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	a := e.startAgent()
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	path := filepath.Join(e.net, "10-calico.conflist")
	before, err := os.Stat(path)
	must(t, err)
	content := e.read("10-calico.conflist")

	must(t, cp.StopAPIServer())
	// Sample the file and the agent's health through the 30 s outage.
	end := time.After(30 * time.Second)
	sample := time.NewTicker(500 * time.Millisecond)
	defer sample.Stop()
	for outage := true; outage; {
		select {
		case <-end:
			outage = false
		case <-sample.C:
		}
		fi, err := os.Stat(path)
		if err != nil || !fi.ModTime().Equal(before.ModTime()) || e.read("10-calico.conflist") != content {
			t.Fatalf("the file changed during the outage (%v)", err)
		}
		if err := a.probe("/healthz"); err != nil {
			t.Fatalf("agent unhealthy during the outage: %v", err)
		}
	}
	must(t, cp.StartAPIServer(e.ctx, false))
	e.editConfigMap("veth_mtu", "0", "1400")
	e.eventually(90*time.Second, "ConfigMap change after the outage", func() error {
		if !strings.Contains(e.read("10-calico.conflist"), `"mtu": 1400,`) {
			return errorf("not yet")
		}
		return nil
	})
}

// TestTokenFileFollowsProjectedSwap: file mode follows kubelet's atomic
// ..data symlink swap of a projected token.
func TestTokenFileFollowsProjectedSwap(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	dir := filepath.Join(e.dir, "projected")
	project := func(gen, token string) {
		data := filepath.Join(dir, "..2026_"+gen)
		must(t, os.MkdirAll(data, 0o755))
		must(t, os.WriteFile(filepath.Join(data, "token"), []byte(token), 0o600))
		must(t, os.Symlink("..2026_"+gen, filepath.Join(dir, "..data_tmp")))
		must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	must(t, os.MkdirAll(dir, 0o755))
	first, err := cp.TokenFor(e.ctx, e.ns, "calico-node", time.Hour)
	must(t, err)
	project("1", first)
	must(t, os.Symlink("..data/token", filepath.Join(dir, "token")))

	e.startAgent("--token-file", filepath.Join(dir, "token"))
	e.waitCondition(e.node, corev1.ConditionFalse, "InSync")
	e.waitFile(e.net, "calico-kubeconfig", "first token", func(s string) bool { return strings.Contains(s, first) })

	second, err := cp.TokenFor(e.ctx, e.ns, "calico-node", 2*time.Hour)
	must(t, err)
	project("2", second)
	e.waitFile(e.net, "calico-kubeconfig", "token after the swap", func(s string) bool { return strings.Contains(s, second) })
	if who, err := e.whoIsKubeconfigOnDisk(); err != nil || !strings.HasSuffix(who, ":calico-node") {
		t.Fatalf("kubeconfig after the swap: %q %v", who, err)
	}
}
