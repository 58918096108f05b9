package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/calico-cni-sync/calico-cni-sync/sync/stuck"
)

// stuckFixture: a Deployment's pod missing a Secret, a bare pod with an
// Unauthorized sandbox, and a Deployment's pod stuck terminating.
func stuckFixture() []stuckPod {
	return []stuckPod{
		{Finding: stuck.Finding{Namespace: "shop", Pod: "web-1", Node: "node-1", Why: stuck.MissingSecret, Secret: "old", Owner: "Deployment/web", Fix: "delete the pod: Deployment/web recreates it"}, uid: "u1"},
		{Finding: stuck.Finding{Namespace: "shop", Pod: "bare", Node: "node-1", Why: stuck.CNIUnauthorized, Fix: "bare pod: deleting it loses it"}, uid: "u2"},
		{Finding: stuck.Finding{Namespace: "shop", Pod: "web-2", Node: "node-2", Why: stuck.CNIUnauthorized, Owner: "Deployment/web", Fix: "force-delete the pod"}, uid: "u3", terminating: true},
	}
}

type deletion struct {
	ns, name, uid string
	grace0        bool
}

// recorder records deletions, failing each with err.
func recorder(err error) (*[]deletion, podDeleter) {
	var got []deletion
	return &got, func(_ context.Context, ns, name, uid string, grace0 bool) error {
		got = append(got, deletion{ns, name, uid, grace0})
		return err
	}
}

func stuckOpts(output string, fix, yes bool) *Options {
	o := NewOptions()
	o.Output, o.Stuck, o.Fix, o.Yes = output, true, fix, yes
	return o
}

func TestStuckText(t *testing.T) {
	var out bytes.Buffer
	code, err := reportStuck(context.Background(), stuckOpts("text", false, false), stuckIO{stdout: &out}, stuckFixture(), nil)
	if err != nil || code != exitDrift {
		t.Fatalf("exit %d, %v", code, err)
	}
	want := `NAMESPACE  POD    NODE    WHY              SECRET  OWNER
shop       web-1  node-1  missingSecret    old     Deployment/web
shop       bare   node-1  cniUnauthorized  -       -
shop       web-2  node-2  cniUnauthorized  -       Deployment/web

fix shop/web-1: delete the pod: Deployment/web recreates it
fix shop/bare: bare pod: deleting it loses it
fix shop/web-2: force-delete the pod
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestStuckNothing(t *testing.T) {
	for _, output := range []string{"text", "json"} {
		var out bytes.Buffer
		got, del := recorder(nil)
		code, err := reportStuck(context.Background(), stuckOpts(output, true, true), stuckIO{stdout: &out}, nil, del)
		if err != nil || code != exitOK || len(*got) != 0 {
			t.Fatalf("%s: exit %d, %v, deleted %v", output, code, err, *got)
		}
		want := "NAMESPACE  POD  NODE  WHY  SECRET  OWNER\n"
		if output == "json" {
			want = "{\n  \"stuck\": []\n}\n"
		}
		if out.String() != want {
			t.Fatalf("%s: got %q, want %q", output, out.String(), want)
		}
	}
}

func TestStuckJSONKeepsStdoutForTheDocument(t *testing.T) {
	var out, errOut bytes.Buffer
	got, del := recorder(nil)
	code, err := reportStuck(context.Background(), stuckOpts("json", true, true), stuckIO{stdout: &out, stderr: &errOut}, stuckFixture(), del)
	if err != nil || code != exitDrift {
		t.Fatalf("exit %d, %v", code, err)
	}
	var doc map[string][]map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON document: %v", err)
	}
	if len(doc) != 1 || len(doc["stuck"]) != 3 {
		t.Fatalf("document %v", doc)
	}
	want := map[string]any{"namespace": "shop", "pod": "web-1", "node": "node-1", "why": "missingSecret", "secret": "old", "owner": "Deployment/web", "fix": "delete the pod: Deployment/web recreates it"}
	if !reflect.DeepEqual(doc["stuck"][0], want) {
		t.Fatalf("row %v, want %v", doc["stuck"][0], want)
	}
	if len(*got) != 2 || !strings.Contains(errOut.String(), "deleted pod shop/web-1 (Deployment/web recreates it)") {
		t.Fatalf("deleted %v; stderr %q", *got, errOut.String())
	}
}

func TestStuckFix(t *testing.T) {
	owned := []deletion{{"shop", "web-1", "u1", false}, {"shop", "web-2", "u3", true}}
	cases := []struct {
		name     string
		yes      bool
		terminal bool
		typed    string
		deleted  []deletion
		says     []string
	}{
		{name: "--yes deletes the owned pods, the terminating one at once", yes: true, deleted: owned,
			says: []string{"deleted pod shop/web-1 (Deployment/web recreates it)", "force-deleted pod shop/web-2", "left bare pod shop/bare: deleting it loses it"}},
		{name: "no terminal, no --yes: only says", says: []string{"would delete pod shop/web-1 (Deployment/web recreates it)", "would delete pod shop/web-2", "nothing deleted: give --yes"}},
		{name: "terminal, yes typed", terminal: true, typed: "yes\n", deleted: owned, says: []string{"deleted pod shop/web-1", "Type yes to delete"}},
		{name: "terminal, y typed", terminal: true, typed: "y\n", says: []string{"nothing deleted"}},
		{name: "terminal, nothing typed", terminal: true, says: []string{"nothing deleted"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			got, del := recorder(nil)
			sio := stuckIO{stdin: strings.NewReader(tc.typed), terminal: tc.terminal, stdout: &out, stderr: &out}
			code, err := reportStuck(context.Background(), stuckOpts("text", true, tc.yes), sio, stuckFixture(), del)
			if err != nil || code != exitDrift {
				t.Fatalf("exit %d, %v", code, err)
			}
			if !reflect.DeepEqual(*got, tc.deleted) && (len(*got) != 0 || len(tc.deleted) != 0) {
				t.Fatalf("deleted %v, want %v", *got, tc.deleted)
			}
			for _, s := range tc.says {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}

func TestStuckFixErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	cases := []struct {
		name string
		err  error
		code int
		says string
	}{
		{"forbidden names what to do", apierrors.NewForbidden(gr, "web-1", errors.New("no")), exitError, "bind the ClusterRole of manifests/report/fix"},
		{"gone already", apierrors.NewNotFound(gr, "web-1"), exitDrift, "pod shop/web-1 is gone already"},
		{"replaced since (UID precondition)", apierrors.NewConflict(gr, "web-1", errors.New("uid")), exitDrift, "pod shop/web-1 is gone already"},
		{"other", errors.New("connection refused"), exitError, "delete pod shop/web-1: connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			got, del := recorder(tc.err)
			code, err := reportStuck(context.Background(), stuckOpts("text", true, true), stuckIO{stdout: &out}, stuckFixture(), del)
			text := out.String()
			if err != nil {
				text += err.Error()
			}
			if code != tc.code || !strings.Contains(text, tc.says) {
				t.Fatalf("exit %d, %q; want %d and %q", code, text, tc.code, tc.says)
			}
			if tc.code == exitError && len(*got) != 1 {
				t.Fatalf("went on deleting after an error: %v", *got)
			}
		})
	}
}
