package stuck

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestTopOwner(t *testing.T) {
	ctl := func(apiVersion, kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &yes}}
	}
	// The ReplicaSets the lookup knows, by name: their controller.
	replicaSets := map[string]*metav1.OwnerReference{
		"web-abc":   {APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: &yes},
		"plain-rs":  nil,
		"rollout-x": {APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "x", Controller: &yes},
	}
	lookup := func(ns string, ref metav1.OwnerReference) (*metav1.OwnerReference, error) {
		if ns != "shop" || ref.Kind != "ReplicaSet" {
			t.Fatalf("looked up %s %s/%s", ref.Kind, ns, ref.Name)
		}
		if ref.Name == "forbidden" {
			return nil, errors.New(`replicasets.apps "forbidden" is forbidden`)
		}
		return replicaSets[ref.Name], nil
	}
	cases := []struct {
		name   string
		owners []metav1.OwnerReference
		want   string
		err    string
	}{
		{"bare pod", nil, "", ""},
		{"owner that is not a controller", []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n"}}, "", ""},
		{"ReplicaSet of a Deployment", ctl("apps/v1", "ReplicaSet", "web-abc"), "Deployment/web", ""},
		{"ReplicaSet alone", ctl("apps/v1", "ReplicaSet", "plain-rs"), "ReplicaSet/plain-rs", ""},
		{"ReplicaSet gone", ctl("apps/v1", "ReplicaSet", "gone"), "ReplicaSet/gone", ""},
		{"ReplicaSet of another controller", ctl("apps/v1", "ReplicaSet", "rollout-x"), "ReplicaSet/rollout-x", ""},
		{"Job stays the Job", ctl("batch/v1", "Job", "nightly-29000"), "Job/nightly-29000", ""},
		{"StatefulSet", ctl("apps/v1", "StatefulSet", "db"), "StatefulSet/db", ""},
		{"DaemonSet", ctl("apps/v1", "DaemonSet", "calico-node"), "DaemonSet/calico-node", ""},
		{"a ReplicaSet kind of another group is not looked up", ctl("example.com/v1", "ReplicaSet", "x"), "ReplicaSet/x", ""},
		{"lookup fails", ctl("apps/v1", "ReplicaSet", "forbidden"), "", "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pod()
			p.OwnerReferences = tc.owners
			got, err := TopOwner(p, lookup)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "shop/web-1") {
					t.Fatalf("error %v, want one naming the pod and %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
