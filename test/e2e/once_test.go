package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// TestOnceWritesATokenThatAuthenticates: --once online reads calico-config
// and the token Secret the real token controller populated; the kubeconfig it
// writes, read back from disk, authenticates as calico-node.
func TestOnceWritesATokenThatAuthenticates(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	code, out := e.run(e.args("--once")...)
	if code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}
	who, err := e.whoIsKubeconfigOnDisk()
	if err != nil {
		t.Fatalf("the kubeconfig on disk does not authenticate: %v", err)
	}
	if want := "system:serviceaccount:" + e.ns + ":calico-node"; who != want {
		t.Fatalf("kubeconfig on disk is %q, want %q", who, want)
	}
	if !strings.Contains(e.read("10-calico.conflist"), `"nodename": "`+e.node+`"`) {
		t.Error("conflist lacks the node name")
	}
	for _, name := range []string{"10-calico.conflist", "calico-kubeconfig"} {
		if fi, err := os.Stat(filepath.Join(e.net, name)); err != nil || (name == "calico-kubeconfig" && fi.Mode().Perm() != 0o600) {
			t.Errorf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	code, out = e.run(e.args("drift", "-o", "json")...)
	var rep struct {
		Files []struct{ State string }
		Token struct {
			Source, Secret string
			Subject        *string
			Accepted       *bool
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("drift exit %d\n%s", code, out)
	}
	if rep.Token.Secret != e.secret || rep.Token.Accepted == nil || !*rep.Token.Accepted || rep.Token.Subject == nil {
		t.Fatalf("token report %+v", rep.Token)
	}
}

// TestOnceSeedStory is the seed's failure: the token Secret is deleted and a
// new one created under another name. The old token no longer authenticates;
// --once follows the new Secret; pinned to the deleted name it fails and
// leaves the file alone.
func TestOnceSeedStory(t *testing.T) {
	e := newEnv(t, "calico-config-v2.6-etcd.yaml")
	if code, out := e.run(e.args("--once")...); code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}
	old := e.secret
	oldToken := e.secretToken(old)
	if !strings.Contains(e.read("10-calico.conf"), oldToken) {
		t.Fatal("10-calico.conf does not embed the token")
	}
	e.regenerate("calico-node-token-b0002")
	e.eventually(30e9, "the deleted Secret's token is refused", func() error {
		if _, err := e.whoIsToken(oldToken); !apierrors.IsUnauthorized(err) {
			return err
		}
		return nil
	})
	code, out := e.run(e.args("drift")...)
	if code != 1 || !strings.Contains(out, "StaleToken") || !strings.Contains(out, "accepted by the API server: false") {
		t.Fatalf("drift after regeneration: exit %d\n%s", code, out)
	}
	before := e.read("10-calico.conf")
	code, out = e.run(e.args("--once", "--token-secret", old)...)
	if code != 2 || !strings.Contains(out, "--token-secret "+e.ns+"/"+old+" not found") {
		t.Fatalf("--once pinned to the deleted Secret: exit %d\n%s", code, out)
	}
	if e.read("10-calico.conf") != before {
		t.Fatal("a failed --once changed the file")
	}
	if code, out = e.run(e.args("--once")...); code != 0 || !strings.Contains(out, "StaleToken") {
		t.Fatalf("--once after regeneration: exit %d\n%s", code, out)
	}
	conf := e.read("10-calico.conf")
	newToken := e.secretToken(e.secret)
	if !strings.Contains(conf, newToken) || strings.Contains(conf, oldToken) {
		t.Fatal("10-calico.conf does not hold the new token")
	}
	who, err := e.whoIsToken(newToken)
	if err != nil || who != "system:serviceaccount:"+e.ns+":calico-node" {
		t.Fatalf("new token: %q %v", who, err)
	}
	if code, out = e.run(e.args("drift")...); code != 0 {
		t.Fatalf("drift after repair: exit %d\n%s", code, out)
	}
}

// TestOnceFollowsNewestPopulatedSecret: with two token Secrets the newest
// populated one wins.
func TestOnceFollowsNewestPopulatedSecret(t *testing.T) {
	e := newEnv(t, "calico-config-v3.24.yaml")
	second := e.newTokenSecret("calico-node-token-z0009")
	if code, out := e.run(e.args("--once")...); code != 0 {
		t.Fatalf("--once exit %d\n%s", code, out)
	}
	if !strings.Contains(e.read("calico-kubeconfig"), e.secretToken(second)) {
		t.Fatal("the kubeconfig does not hold the newest Secret's token")
	}
}

// TestOnceMissingConfigMap: a clear error, nothing written.
func TestOnceMissingConfigMap(t *testing.T) {
	e := newEnv(t, "calico-config-v3.32.yaml")
	code, out := e.run(e.args("--once", "--configmap", "no-such-config")...)
	if code != 2 || !strings.Contains(out, "ConfigMap "+e.ns+"/no-such-config not found") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if entries, _ := os.ReadDir(e.net); len(entries) != 0 {
		t.Fatalf("%d files written", len(entries))
	}
}
