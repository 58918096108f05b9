package sandbox

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

func failedSandbox(name, host string, at time.Time) *corev1.Event {
	return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: name + "-pod"},
		Reason:         Reason, Message: "plugin type=\"calico\" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized",
		Source:         corev1.EventSource{Component: "kubelet", Host: host},
		FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at), Count: 1}
}

// TestSourceDeliversOnlyThisNodesNewFailures: a failure the first list
// finds is in Since and not delivered (it happened before the caller
// started); a new one on the node is delivered, and again when the kubelet
// aggregates a later failure into the same event; another node's never is,
// and is kept only as a stub.
func TestSourceDeliversOnlyThisNodesNewFailures(t *testing.T) {
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	client := fake.NewClientset(failedSandbox("old", "node-a", t0))
	got := make(chan Failure, 10)
	s := New(client, "node-a", func(f Failure) { got <- f })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	syncCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if !cache.WaitForCacheSync(syncCtx.Done(), s.HasSynced) {
		t.Fatal("the first list did not complete")
	}
	if f := s.Since(t0); len(f) != 1 || f[0].Pod != "default/old-pod" {
		t.Fatalf("Since(t0) = %+v, want the old failure", f)
	}
	events := client.CoreV1().Events("default")
	other, err := events.Create(ctx, failedSandbox("other", "node-b", t0.Add(time.Second)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := events.Create(ctx, failedSandbox("mine", "node-a", t0.Add(2*time.Second)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Delivered in order: had the other node's been delivered, it would
	// come first.
	if f := <-got; f.Pod != "default/mine-pod" || !f.At.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("first delivery %+v, want mine-pod's failure", f)
	}
	mine.LastTimestamp, mine.Count, mine.ResourceVersion = metav1.NewTime(t0.Add(10*time.Second)), 2, "2"
	if _, err := events.Update(ctx, mine, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if f := <-got; f.Pod != "default/mine-pod" || !f.At.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("aggregated failure %+v, want mine-pod's at its new lastTimestamp", f)
	}
	if f := s.Since(t0.Add(5 * time.Second)); len(f) != 1 || f[0].Pod != "default/mine-pod" {
		t.Fatalf("Since(t0+5s) = %+v, want only mine-pod's", f)
	}
	if f := s.Since(t0); len(f) != 2 || f[0].Pod != "default/old-pod" {
		t.Fatalf("Since(t0) = %+v, want old-pod's then mine-pod's", f)
	}
	obj, ok, err := s.inf.GetStore().Get(other)
	if err != nil || !ok {
		t.Fatalf("the other node's event is not followed (%v)", err)
	}
	if ev := obj.(*corev1.Event); ev.Message != "" || ev.Source.Host != "" {
		t.Fatalf("the other node's event is kept in full: %+v", ev)
	}
	select {
	case f := <-got:
		t.Fatalf("unexpected delivery %+v", f)
	default:
	}
}

// TestOnErrorIsToldOfAForbiddenList: an agent that may not read events
// hears why its watch sees nothing, rather than watching nothing in
// silence.
func TestOnErrorIsToldOfAForbiddenList(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", errors.New("RBAC: no grant"))
	})
	s := New(client, "node-a", func(Failure) {})
	got := make(chan error, 10)
	s.OnError(func(err error) {
		select {
		case got <- err:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	select {
	case err := <-got:
		if !apierrors.IsForbidden(err) {
			t.Fatalf("told %v, want the Forbidden", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a forbidden list was not told")
	}
}
