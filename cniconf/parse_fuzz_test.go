package cniconf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// kubeconfigSeeds are the kubeconfigs install-cni and calico-node write,
// and the one the renderer writes.
func kubeconfigSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, name := range []string{"kubeconfig-install-cni-v2.6.txt", "kubeconfig-install-cni-v3.24.txt", "kubeconfig-install-cni-v3.32.txt", "kubeconfig-token-watch.txt"} {
		b, err := os.ReadFile(filepath.Join(fixtureDir(f), "installs", name))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	in := &Inputs{Env: mapEnv(clusterEnv), Token: plainToken, CA: []byte(testCA)}
	k, err := in.DesiredKubeconfig()
	if err != nil {
		f.Fatal(err)
	}
	return append(out, k.Bytes())
}

// FuzzKubeconfigSnapshot: whatever kubeconfig is on disk, reading its
// meaning never panics; a meaning that is read masks the token, and the
// record made of it recognises the same file (a file the agent wrote is
// its own, however the YAML is laid out).
func FuzzKubeconfigSnapshot(f *testing.F) {
	for _, seed := range kubeconfigSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte("users:\n- name: a\n  user:\n    token: " + plainOldToken + "\n"))
	f.Add([]byte("clusters: [{cluster: {server: 'https://[10.96.0.1]:443'}}]\nusers: [{user: {token: x}}]\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("clusters: [~]\nusers: [{0: ~, \"0\": 1, 1: {0: 0}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := parseKubeconfigSnapshot(data, nil)
		if err != nil {
			return
		}
		content, err := json.Marshal(snap.meaning)
		if err != nil {
			return // no such file is recorded: the agent records only what it renders
		}
		if tok := snap.tokens[0]; len(tok) >= 8 && strings.Count(string(data), tok) == 1 && strings.Contains(string(content), tok) {
			t.Fatalf("the meaning holds the token: %s", content)
		}
		again, err := parseKubeconfigSnapshot(data, nil)
		if err != nil || !reflect.DeepEqual(normalize(again.meaning), normalize(snap.meaning)) {
			t.Fatalf("a second read differs: %v", err)
		}
		if !(&Snapshot{Content: content}).matches(data, parseKubeconfigSnapshot) {
			t.Fatalf("the record of a kubeconfig does not recognise it: %s", content)
		}
	})
}

// FuzzDecodeRecord: whatever the state directory holds, decoding a record
// never panics; a record decoded is one that encodes and decodes to itself,
// and judging a file by it never panics.
func FuzzDecodeRecord(f *testing.F) {
	in := &Inputs{Template: `{"name":"k","cniVersion":"0.3.1","plugins":[{"type":"calico","kubernetes":{"kubeconfig":"__KUBECONFIG_FILEPATH__"}}]}`,
		Env: mapEnv(clusterEnv), NetDir: "/etc/cni/net.d", Token: plainToken, CA: []byte(testCA), FileExists: func(string) bool { return false }}
	want, err := BuildDesired(in, "")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range want.Files {
		snap, err := snapshotOf(file, fixedTime(0))
		if err != nil {
			f.Fatal(err)
		}
		rec, err := json.Marshal(&Record{Version: RecordVersion, NetDir: in.NetDir, File: file.Name, Written: snap, Pending: snap, Facts: map[string]string{FactNodeName: "n1"}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec, file.Content)
		v1, _ := json.Marshal(recordV1{File: file.Name, WrittenAt: fixedTime(1), Content: snap.Content})
		f.Add(v1, file.Content)
	}
	f.Add([]byte(`{"version":1,"content":{"cluster":{"server":"https://10.0.0.1:443"}}}`), []byte("{}"))
	f.Add([]byte(`{"version":99}`), []byte("{}"))
	f.Add([]byte(`{"version":2,"written":{"content":"x"}}`), []byte("not json"))
	f.Fuzz(func(t *testing.T, data, disk []byte) {
		r, ok := decodeRecord(data)
		if !ok {
			return
		}
		if r == nil {
			t.Fatal("a record decoded as nil")
		}
		for _, parse := range []func([]byte, []TokenField) (snapshot, error){parseConf, parseKubeconfigSnapshot} {
			_ = r.matches(disk, parse)
		}
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		again, ok := decodeRecord(enc)
		if !ok {
			t.Fatalf("a decoded record, encoded, does not decode: %s", enc)
		}
		enc2, _ := json.Marshal(again)
		if string(enc2) != string(enc) {
			t.Fatalf("a record changes when saved again:\n%s\n%s", enc, enc2)
		}
	})
}
