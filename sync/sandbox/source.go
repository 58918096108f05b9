package sandbox

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Reason is the kubelet's reason for a sandbox it could not create.
const Reason = "FailedCreatePodSandBox"

// Selector is the watch's field selector: what the API server can select
// of a kubelet's sandbox failure (not its host).
var Selector = fields.Set{"reason": Reason, "source": "kubelet", "involvedObject.kind": "Pod"}.AsSelector().String()

// Failure is one sandbox failure on the node: the pod, when the kubelet
// last saw it fail (an event the kubelet aggregates is one Failure, at its
// latest time) and the kubelet's message, the CNI plugin's error in it.
type Failure struct {
	Pod     string // namespace/name
	At      time.Time
	Message string
}

// Source watches the node's sandbox failures. Made by New, run by Run.
type Source struct {
	node      string
	onFailure func(Failure)
	inf       cache.SharedIndexInformer
}

// New is a Source for node; onFailure is called, from the watch's
// goroutine, with each failure on node the watch sees happen: a new event,
// or an event the kubelet updated with a later time. Those the first list
// finds have happened before the caller started; Since has them.
func New(client kubernetes.Interface, node string, onFailure func(Failure)) *Source {
	inf := coreinformers.NewFilteredEventInformer(client, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = Selector })
	s := &Source{node: node, onFailure: onFailure, inf: inf}
	_ = inf.SetTransform(s.shrink)
	return s
}

// OnError, when called before Run, is told of each failed list or watch
// (a Forbidden one: the agent may not read events).
func (s *Source) OnError(fn func(error)) {
	_ = s.inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { fn(err) })
}

// Run watches until ctx ends; it is called once.
func (s *Source) Run(ctx context.Context) error {
	if _, err := s.inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if f, ok := s.failure(obj); ok && !initial {
				s.onFailure(f)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			f, ok := s.failure(newObj)
			if !ok {
				return
			}
			if old, ok := s.failure(oldObj); ok && !f.At.After(old.At) {
				return // a resync, or an update that is not a new failure
			}
			s.onFailure(f)
		},
	}); err != nil {
		return err
	}
	s.inf.RunWithContext(ctx)
	return nil
}

// HasSynced reports whether the first list has completed: until then
// Since knows nothing.
func (s *Source) HasSynced() bool { return s.inf.HasSynced() }

// Since is the failures on the node the kubelet saw at or after t, oldest
// first, as the watch has them (the API server keeps events an hour by
// default, --event-ttl).
func (s *Source) Since(t time.Time) []Failure {
	var out []Failure
	for _, obj := range s.inf.GetStore().List() {
		if f, ok := s.failure(obj); ok && !f.At.Before(t) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Failure) int { return a.At.Compare(b.At) })
	return out
}

// failure is obj as a failure on the node; false for anything else.
func (s *Source) failure(obj any) (Failure, bool) {
	ev, ok := obj.(*corev1.Event)
	if !ok || Host(ev) != s.node || ev.Reason != Reason || ev.InvolvedObject.Kind != "Pod" {
		return Failure{}, false
	}
	return Failure{Pod: ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name, At: EventTime(ev), Message: ev.Message}, true
}

// shrink keeps of another node's event only what the cache needs to
// follow it (its name and resourceVersion), and of the node's own what
// failure reads.
func (s *Source) shrink(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil // a tombstone
	}
	meta := metav1.ObjectMeta{Name: ev.Name, Namespace: ev.Namespace, ResourceVersion: ev.ResourceVersion, CreationTimestamp: ev.CreationTimestamp}
	if Host(ev) != s.node {
		return &corev1.Event{ObjectMeta: meta}, nil
	}
	return &corev1.Event{ObjectMeta: meta, InvolvedObject: corev1.ObjectReference{Kind: ev.InvolvedObject.Kind,
		Namespace: ev.InvolvedObject.Namespace, Name: ev.InvolvedObject.Name, UID: ev.InvolvedObject.UID},
		Reason: ev.Reason, Message: ev.Message, Source: ev.Source, ReportingInstance: ev.ReportingInstance,
		FirstTimestamp: ev.FirstTimestamp, LastTimestamp: ev.LastTimestamp, EventTime: ev.EventTime, Series: ev.Series}, nil
}

// Host is the node an event's writer ran on: the kubelet's source.host,
// or the reportingInstance of a writer that sets only that.
func Host(ev *corev1.Event) string {
	if ev.Source.Host != "" {
		return ev.Source.Host
	}
	return ev.ReportingInstance
}

// EventTime is when an event was last seen: the latest of its series, its
// lastTimestamp, its eventTime and its firstTimestamp (the kubelet's
// core/v1 recorder sets the timestamps, events.k8s.io writers eventTime
// and series); its creation when it has none.
func EventTime(ev *corev1.Event) time.Time {
	t := ev.FirstTimestamp.Time
	for _, c := range []time.Time{ev.LastTimestamp.Time, ev.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if ev.Series != nil && ev.Series.LastObservedTime.After(t) {
		t = ev.Series.LastObservedTime.Time
	}
	if t.IsZero() {
		t = ev.CreationTimestamp.Time
	}
	return t
}
