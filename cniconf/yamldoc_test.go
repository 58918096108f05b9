package cniconf

import (
	"strings"
	"testing"
)

// TestKeysThatCollideAreRefused: sigs.k8s.io/yaml reads 0, "0" and 0.0 as
// one JSON key and keeps whichever its map iteration meets last, so a
// kubeconfig with both could be judged InSync on one pass and Drifted on the
// next. Such a file is refused, naming the key, and a kubeconfig whose keys
// are strings (the last of a repeated key winning) still reads.
func TestKeysThatCollideAreRefused(t *testing.T) {
	for _, doc := range []string{
		"clusters: [~]\nusers: [{0: ~, \"0\": 1, 1: {0: 0, \"0\": 2}}]\n",
		"clusters: [{cluster: {server: 'https://127.0.0.1:6443', true: a, 'true': b}}]\nusers: [{user: {token: x}}]\n",
	} {
		if _, err := parseKubeconfigSnapshot([]byte(doc), nil); err == nil || !strings.Contains(err.Error(), "not a string") {
			t.Errorf("%q: err %v, want a refusal of the key", doc, err)
		}
		if err := CheckYAMLKeys([]byte(doc)); err == nil {
			t.Errorf("CheckYAMLKeys(%q) passed", doc)
		}
	}
	ok := "clusters: [{cluster: {server: 'https://127.0.0.1:6443'}}]\nusers: [{name: a, user: {token: old}}, {name: a, user: {token: x, token: last}}]\n"
	snap, err := parseKubeconfigSnapshot([]byte(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if users := snap.meaning.(map[string]any)["users"].([]any); users[1].(map[string]any)["user"].(map[string]any)["token"] != "last" {
		t.Errorf("a repeated key reads %v, want its last value", users[1])
	}
	if err := CheckYAMLKeys([]byte(ok)); err != nil {
		t.Error(err)
	}
	if err := CheckYAMLKeys([]byte("- a\n")); err != nil {
		t.Errorf("a list at the top: %v, want it left to its reader", err)
	}
}
