package stuck

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Why a pod is stuck.
type Why string

const (
	// MissingSecret: the pod has not started and mounts a Secret that no
	// longer exists; the kubelet retries the mount forever.
	MissingSecret Why = "missingSecret"
	// CNIUnauthorized: the pod waits in ContainerCreating, or is stuck
	// terminating, and its latest sandbox event carries the CNI's
	// Unauthorized.
	CNIUnauthorized Why = "cniUnauthorized"
)

// TerminatingAfter is how long past its deletion timestamp plus its grace
// period a deleting pod must be to count as stuck terminating. A kubelet
// that can tear the sandbox down is done well within it.
const TerminatingAfter = 60 * time.Second

// Facts are what the judgement needs beyond the pod itself.
type Facts struct {
	Now time.Time
	// SecretExists says whether a Secret of the pod's namespace exists; nil
	// when the namespace's Secrets could not be listed (the list is not
	// granted), and NotFound decides instead.
	SecretExists func(name string) bool
	// NotFound are the Secrets the kubelet's FailedMount events of the pod
	// say are not found. The kubelet reports a failing mount again every
	// few minutes, so a pod still waiting for a Secret has such an event.
	NotFound []string
	// Sandbox is the pod's latest sandbox event, nil when it has none.
	Sandbox *SandboxEvent
	// MountMessage is the message of the kubelet's latest FailedMount event
	// of the pod that names a missing Secret, "" when there is none.
	MountMessage string
}

// Verdict is why a pod is stuck, with the evidence.
type Verdict struct {
	Why Why
	// Secrets are the missing Secrets (MissingSecret), sorted.
	Secrets []string
	// Terminating: the pod is being deleted and stuck at it.
	Terminating bool
	// Sandbox is the event that carries the Unauthorized (CNIUnauthorized).
	Sandbox *SandboxEvent
	// MountMessage is the kubelet's FailedMount message naming a missing
	// Secret, when there was one (MissingSecret).
	MountMessage string
}

// Judge says whether the pod is stuck, and why. A pod being deleted is
// judged as a terminating pod only: once its deletion is asked for, a
// missing Secret no longer matters and a recent deletion is the kubelet's
// to finish. A pod missing a Secret is reported as such even when its
// sandbox failed too: the kubelet mounts the volumes before it asks for a
// sandbox.
func Judge(pod *corev1.Pod, f Facts) (Verdict, bool) {
	if pod.DeletionTimestamp != nil {
		if StuckTerminating(pod, f.Now) && f.Sandbox.Unauthorized() {
			return Verdict{Why: CNIUnauthorized, Terminating: true, Sandbox: f.Sandbox}, true
		}
		return Verdict{}, false
	}
	if !NotStarted(pod) {
		return Verdict{}, false
	}
	if missing := MissingSecrets(pod, f); len(missing) > 0 {
		v := Verdict{Why: MissingSecret, Secrets: missing}
		if slices.Contains(missing, MissingSecretInMount(f.MountMessage)) {
			v.MountMessage = f.MountMessage
		}
		return v, true
	}
	if ContainerCreating(pod) && f.Sandbox.Unauthorized() {
		return Verdict{Why: CNIUnauthorized, Sandbox: f.Sandbox}, true
	}
	return Verdict{}, false
}

// MissingSecrets are the Secrets the pod mounts that do not exist, sorted.
// Without a list of the Secrets (SecretExists nil), a Secret is missing
// when the kubelet's FailedMount events say it is not found and the pod
// still waits for its volumes (ContainerCreating): a pod past that point
// mounted them, whatever an older event says.
func MissingSecrets(pod *corev1.Pod, f Facts) []string {
	var missing []string
	for _, s := range SecretRefs(pod) {
		switch {
		case f.SecretExists != nil:
			if !f.SecretExists(s) {
				missing = append(missing, s)
			}
		case slices.Contains(f.NotFound, s) && ContainerCreating(pod):
			missing = append(missing, s)
		}
	}
	return missing
}

// NotStarted reports whether the pod is in a phase before running: not
// Running, and not finished (a Succeeded or Failed pod waits for nothing).
func NotStarted(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
		return false
	}
	return true
}

// ContainerCreating reports whether a pending pod waits for its sandbox: a
// container (or init container) waits with reason ContainerCreating, or no
// container has started yet. A container waiting for another reason
// (ImagePullBackOff, PodInitializing, CreateContainerConfigError) is past
// the sandbox: the kubelet pulls images and creates containers only in a
// sandbox it has.
func ContainerCreating(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodPending {
		return false
	}
	sandboxUp := false
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, c := range list {
			if c.State.Waiting != nil && c.State.Waiting.Reason == "ContainerCreating" {
				return true
			}
			if c.State.Running != nil || c.State.Terminated != nil || c.LastTerminationState.Terminated != nil ||
				(c.State.Waiting != nil && c.State.Waiting.Reason != "") {
				sandboxUp = true
			}
		}
	}
	return !sandboxUp
}

// StuckTerminating reports whether the pod's deletion timestamp plus its
// grace period is more than TerminatingAfter before now.
func StuckTerminating(pod *corev1.Pod, now time.Time) bool {
	if pod.DeletionTimestamp == nil {
		return false
	}
	var grace time.Duration
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	return now.Sub(pod.DeletionTimestamp.Add(grace)) > TerminatingAfter
}

// SecretRefs are the Secrets the pod cannot start without: those of secret
// volumes and of projected secret sources not marked optional, sorted and
// without repeats. (Environment references are left out: a missing one
// stops a container with CreateContainerConfigError, not the sandbox, and
// the fix is the same edit of the template whatever the token.)
func SecretRefs(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		if s := v.Secret; s != nil && s.SecretName != "" && (s.Optional == nil || !*s.Optional) {
			names = append(names, s.SecretName)
		}
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if s := src.Secret; s != nil && s.Name != "" && (s.Optional == nil || !*s.Optional) {
					names = append(names, s.Name)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Prune keeps of a pod only what Judge, TopOwner and Describe read, so a
// lister can hold many candidates in little memory. Judge gives the same
// verdict for the pruned pod as for the pod.
func Prune(pod *corev1.Pod) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
		DeletionTimestamp: pod.DeletionTimestamp, DeletionGracePeriodSeconds: pod.DeletionGracePeriodSeconds,
	}}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		p.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	p.Spec.NodeName = pod.Spec.NodeName
	for _, name := range SecretRefs(pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}})
	}
	p.Status.Phase = pod.Status.Phase
	prune := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, c := range in {
			out = append(out, corev1.ContainerStatus{State: c.State, LastTerminationState: c.LastTerminationState})
		}
		return out
	}
	p.Status.InitContainerStatuses = prune(pod.Status.InitContainerStatuses)
	p.Status.ContainerStatuses = prune(pod.Status.ContainerStatuses)
	return p
}
