package stuck

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"

	corev1 "k8s.io/api/core/v1"
)

// Event reasons the kubelet gives.
const (
	ReasonFailedCreatePodSandBox = "FailedCreatePodSandBox"
	ReasonFailedKillPodSandbox   = "FailedKillPodSandbox"
	ReasonFailedMount            = "FailedMount"
)

// SandboxReasons are the reasons of the events that say how the kubelet's
// last try to set up or tear down a pod's sandbox went.
var SandboxReasons = []string{ReasonFailedCreatePodSandBox, ReasonFailedKillPodSandbox}

// SandboxEvent is what the judgement needs of a pod's latest sandbox event.
type SandboxEvent struct {
	Reason  string
	Message string
	Time    time.Time
}

// Unauthorized reports whether the event carries the CNI's Unauthorized:
// the API server rejected the token the CNI plugin's kubeconfig holds
// (Calico: "connection is unauthorized: Unauthorized").
func (e *SandboxEvent) Unauthorized() bool {
	return e != nil && strings.Contains(e.Message, "Unauthorized")
}

// PodKey names the pod an event is about, or "" for an event about
// something else. The UID is part of it when the event has one, so that an
// event of an earlier pod of the same name (a StatefulSet's) does not count.
func PodKey(ev *corev1.Event) string {
	o := ev.InvolvedObject
	if o.Kind != "Pod" || o.Name == "" {
		return ""
	}
	return o.Namespace + "/" + o.Name + "/" + string(o.UID)
}

// KeyOf is PodKey's counterpart for a pod: the keys an event about this pod
// may have (with its UID, and without one).
func KeyOf(pod *corev1.Pod) (withUID, withoutUID string) {
	base := pod.Namespace + "/" + pod.Name + "/"
	return base + string(pod.UID), base
}

// missingSecretMount matches the kubelet's FailedMount message for a Secret
// that does not exist: `MountVolume.SetUp failed for volume "v" : secret "s"
// not found`.
var missingSecretMount = regexp.MustCompile(`secret "([^"]+)" not found`)

// MissingSecretInMount is the Secret a FailedMount message says is not
// found, or "".
func MissingSecretInMount(msg string) string {
	m := missingSecretMount.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

// Latest keeps the latest event of each pod, by PodKey.
type Latest map[string]*SandboxEvent

// Add keeps ev when it is about a pod and later than what is kept for it.
func (l Latest) Add(ev *corev1.Event) {
	key := PodKey(ev)
	if key == "" {
		return
	}
	if at := sandbox.EventTime(ev); l[key] == nil || at.After(l[key].Time) {
		l[key] = &SandboxEvent{Reason: ev.Reason, Message: ev.Message, Time: at}
	}
}

// Of is the latest event about the pod, whether the event names the pod's
// UID or not; nil when there is none.
func (l Latest) Of(pod *corev1.Pod) *SandboxEvent {
	withUID, withoutUID := KeyOf(pod)
	a, b := l[withUID], l[withoutUID]
	if a == nil || (b != nil && b.Time.After(a.Time)) {
		return b
	}
	return a
}

// SplitPodKey is PodKey's parts.
func SplitPodKey(key string) (namespace, name, uid string) {
	namespace, rest, _ := strings.Cut(key, "/")
	name, uid, _ = strings.Cut(rest, "/")
	return namespace, name, uid
}

// NotFound is, per pod (by PodKey), the Secrets the kubelet's FailedMount
// events say are not found: what report --stuck knows of missing Secrets
// when it may not list them.
type NotFound map[string]map[string]bool

// Add notes the Secret a FailedMount event says is not found.
func (n NotFound) Add(ev *corev1.Event) {
	key, name := PodKey(ev), MissingSecretInMount(ev.Message)
	if key == "" || name == "" {
		return
	}
	if n[key] == nil {
		n[key] = map[string]bool{}
	}
	n[key][name] = true
}

// Of are the Secrets the events about the pod, whether they name the pod's
// UID or not, say are not found; sorted.
func (n NotFound) Of(pod *corev1.Pod) []string {
	withUID, withoutUID := KeyOf(pod)
	var names []string
	for _, key := range []string{withUID, withoutUID} {
		for name := range n[key] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
