package stuck

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestSecretSet(t *testing.T) {
	s := SecretSet{}
	s.Want("shop", "old")
	s.Want("shop", "new")
	s.Found("shop", "new")
	s.Found("shop", "unwanted")
	s.Want("shop", "new") // noted again after it was found: still found
	for _, tc := range []struct {
		ns, name string
		want     bool
	}{{"shop", "old", false}, {"shop", "new", true}, {"shop", "never-checked", true}, {"other", "old", true}} {
		if got := s.Exists(tc.ns, tc.name); got != tc.want {
			t.Errorf("Exists(%s, %s) = %v, want %v", tc.ns, tc.name, got, tc.want)
		}
	}
	if _, kept := s["shop"]["unwanted"]; kept {
		t.Error("a Secret nobody mounts is kept")
	}
}

func TestLatest(t *testing.T) {
	ev := func(uid, msg string, at time.Time) *corev1.Event {
		return &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-1", UID: types.UID(uid)},
			Reason: ReasonFailedCreatePodSandBox, Message: msg, LastTimestamp: metav1.NewTime(at)}
	}
	l := Latest{}
	l.Add(ev("u1", "old", now.Add(-time.Hour)))
	l.Add(ev("u1", "newest", now))
	l.Add(ev("u1", "older", now.Add(-time.Minute)))
	if got := l.Of(pod()); got == nil || got.Message != "newest" || !got.Time.Equal(now) {
		t.Fatalf("latest %+v, want newest", got)
	}
	l.Add(ev("", "no uid, later", now.Add(time.Minute)))
	if got := l.Of(pod()); got.Message != "no uid, later" {
		t.Fatalf("latest %+v, want the later event without a UID", got)
	}
	other := pod()
	other.UID = "u2"
	if got := l.Of(other); got.Message != "no uid, later" {
		t.Fatalf("a pod of the same name and another UID sees %+v", got)
	}
	l.Add(&corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "n"}, Message: "x"})
	if len(l) != 2 {
		t.Fatalf("kept %d keys, want 2 (a Node event is not kept)", len(l))
	}
	if ns, name, uid := SplitPodKey("shop/web-1/u1"); ns != "shop" || name != "web-1" || uid != "u1" {
		t.Fatalf("SplitPodKey: %s %s %s", ns, name, uid)
	}
}

func TestNotFound(t *testing.T) {
	ev := func(uid, msg string) *corev1.Event {
		return &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-1", UID: types.UID(uid)},
			Reason: ReasonFailedMount, Message: msg, LastTimestamp: metav1.NewTime(now)}
	}
	n := NotFound{}
	n.Add(ev("u1", `MountVolume.SetUp failed for volume "a" : secret "zeta" not found`))
	n.Add(ev("", `MountVolume.SetUp failed for volume "b" : secret "alpha" not found`))
	n.Add(ev("u1", `MountVolume.SetUp failed for volume "a" : secret "zeta" not found`))
	n.Add(ev("u1", `MountVolume.SetUp failed for volume "c" : configmap "cfg" not found`))
	n.Add(ev("u0", `MountVolume.SetUp failed for volume "d" : secret "earlier-pod" not found`))
	if got, want := n.Of(pod()), []string{"alpha", "zeta"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Of = %v, want %v (both keys, sorted, no repeats, not another pod's)", got, want)
	}
}
