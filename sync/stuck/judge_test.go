package stuck

import (
	"reflect"
	"testing"
	"time"

	"github.com/calico-cni-sync/calico-cni-sync/sync/sandbox"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const unauthorized = `plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized`

type podOpt func(*corev1.Pod)

func pod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1"},
		Spec: corev1.PodSpec{NodeName: "node-1"}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func secretVolume(name string, optional *bool) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v-" + name,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name, Optional: optional}}})
	}
}

func projectedSecret(name string, optional *bool) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "p-" + name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: optional}},
			}}}})
	}
}

func container(s corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: "c", State: s})
	}
}

func deleted(ago time.Duration, grace int64) podOpt {
	return func(p *corev1.Pod) {
		t := metav1.NewTime(now.Add(-ago))
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &t, &grace
	}
}

var (
	yes       = true
	no        = false
	waitingCC = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	running   = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	authFail  = &SandboxEvent{Reason: ReasonFailedCreatePodSandBox, Message: unauthorized, Time: now.Add(-time.Minute)}
	otherFail = &SandboxEvent{Reason: ReasonFailedCreatePodSandBox, Message: "failed to reserve sandbox name", Time: now}
	killFail  = &SandboxEvent{Reason: ReasonFailedKillPodSandbox, Message: unauthorized, Time: now.Add(-time.Minute)}
)

func exists(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

func TestJudge(t *testing.T) {
	mount := `MountVolume.SetUp failed for volume "v-old" : secret "old" not found`
	cases := []struct {
		name string
		pod  *corev1.Pod
		f    Facts
		want *Verdict
	}{
		{"pending, secret volume gone", pod(secretVolume("old", nil)), Facts{SecretExists: exists()},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}}},
		{"with the kubelet's FailedMount as evidence", pod(secretVolume("old", nil)), Facts{SecretExists: exists(), MountMessage: mount},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}, MountMessage: mount}},
		{"a FailedMount about another Secret is no evidence", pod(secretVolume("old", nil)),
			Facts{SecretExists: exists(), MountMessage: `MountVolume.SetUp failed for volume "x" : secret "other" not found`},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}}},
		{"projected source gone", pod(projectedSecret("old", &no)), Facts{SecretExists: exists()},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}}},
		{"two gone, one present, sorted", pod(secretVolume("zeta", nil), projectedSecret("alpha", nil), secretVolume("here", nil)),
			Facts{SecretExists: exists("here")}, &Verdict{Why: MissingSecret, Secrets: []string{"alpha", "zeta"}}},
		{"optional volume gone", pod(secretVolume("old", &yes)), Facts{SecretExists: exists()}, nil},
		{"optional projected source gone", pod(projectedSecret("old", &yes)), Facts{SecretExists: exists()}, nil},
		{"secret present", pod(secretVolume("new", nil)), Facts{SecretExists: exists("new")}, nil},
		{"running pod, secret gone", pod(phase(corev1.PodRunning), secretVolume("old", nil)), Facts{SecretExists: exists()}, nil},
		{"succeeded pod, secret gone", pod(phase(corev1.PodSucceeded), secretVolume("old", nil)), Facts{SecretExists: exists()}, nil},
		{"failed pod, secret gone", pod(phase(corev1.PodFailed), secretVolume("old", nil)), Facts{SecretExists: exists()}, nil},
		// Secrets not listed: the kubelet's FailedMount events decide.
		{"not listed, FailedMount says not found", pod(secretVolume("old", nil), container(waitingCC)), Facts{NotFound: []string{"old"}, MountMessage: mount},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}, MountMessage: mount}},
		{"not listed, no container status yet", pod(projectedSecret("old", nil), secretVolume("here", nil)), Facts{NotFound: []string{"old"}},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}}},
		{"not listed, no FailedMount event", pod(secretVolume("old", nil)), Facts{}, nil},
		{"not listed, FailedMount about a Secret not mounted", pod(secretVolume("old", nil)), Facts{NotFound: []string{"other"}}, nil},
		{"not listed, FailedMount but the volumes are up", pod(secretVolume("old", nil),
			container(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}})), Facts{NotFound: []string{"old"}}, nil},
		{"not listed, optional", pod(secretVolume("old", &yes)), Facts{NotFound: []string{"old"}}, nil},
		{"listed and present, an old FailedMount", pod(secretVolume("old", nil)), Facts{SecretExists: exists("old"), NotFound: []string{"old"}}, nil},
		{"missing secret wins over the sandbox", pod(secretVolume("old", nil)), Facts{SecretExists: exists(), Sandbox: authFail},
			&Verdict{Why: MissingSecret, Secrets: []string{"old"}}},
		{"ContainerCreating, Unauthorized", pod(container(waitingCC)), Facts{Sandbox: authFail},
			&Verdict{Why: CNIUnauthorized, Sandbox: authFail}},
		{"no container started, Unauthorized", pod(), Facts{Sandbox: authFail}, &Verdict{Why: CNIUnauthorized, Sandbox: authFail}},
		{"ContainerCreating, latest sandbox event is another failure", pod(container(waitingCC)), Facts{Sandbox: otherFail}, nil},
		{"ContainerCreating, no sandbox event", pod(container(waitingCC)), Facts{}, nil},
		{"a container started", pod(container(running)), Facts{Sandbox: authFail}, nil},
		{"running, Unauthorized", pod(phase(corev1.PodRunning), container(running)), Facts{Sandbox: authFail}, nil},
		{"terminating past grace+60s, kill Unauthorized", pod(phase(corev1.PodRunning), deleted(91*time.Second, 30)), Facts{Sandbox: killFail},
			&Verdict{Why: CNIUnauthorized, Terminating: true, Sandbox: killFail}},
		{"terminating, within grace+60s", pod(phase(corev1.PodRunning), deleted(89*time.Second, 30)), Facts{Sandbox: killFail}, nil},
		{"terminating, no grace recorded", pod(deleted(61*time.Second, 0)), Facts{Sandbox: killFail},
			&Verdict{Why: CNIUnauthorized, Terminating: true, Sandbox: killFail}},
		{"terminating long, sandbox fine", pod(deleted(time.Hour, 30)), Facts{Sandbox: otherFail}, nil},
		{"terminating pending pod with a missing secret", pod(secretVolume("old", nil), deleted(time.Hour, 30)), Facts{SecretExists: exists()}, nil},
		{"deleted recently, Unauthorized create", pod(container(waitingCC), deleted(time.Second, 30)), Facts{Sandbox: authFail}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.Now = now
			for _, p := range []*corev1.Pod{tc.pod, Prune(tc.pod)} {
				got, ok := Judge(p, tc.f)
				if tc.want == nil {
					if ok {
						t.Fatalf("stuck: %+v", got)
					}
					continue
				}
				if !ok || !reflect.DeepEqual(got, *tc.want) {
					t.Fatalf("got %+v (%v), want %+v", got, ok, *tc.want)
				}
			}
		})
	}
}

func TestContainerCreating(t *testing.T) {
	restarted := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"no statuses", pod(), true},
		{"waiting ContainerCreating", pod(container(waitingCC)), true},
		{"init container ContainerCreating", pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{State: waitingCC}}
		}), true},
		{"waiting PodInitializing after an init container ran", pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
		}), false},
		{"image pull: the sandbox is up", pod(container(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}})), false},
		{"waiting, no reason yet", pod(container(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}})), true},
		{"restarted before", pod(func(p *corev1.Pod) { p.Status.ContainerStatuses = []corev1.ContainerStatus{restarted} }), false},
		{"running", pod(phase(corev1.PodRunning), container(running)), false},
		{"unknown phase", pod(phase(corev1.PodUnknown)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ContainerCreating(tc.pod); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPruneKeepsOnlyWhatIsJudged(t *testing.T) {
	p := pod(secretVolume("old", nil), secretVolume("opt", &yes), projectedSecret("proj", nil), container(waitingCC), func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "web"}
		p.Annotations = map[string]string{"big": string(make([]byte, 4096))}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "web", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", Controller: &yes}, {Kind: "Other", Name: "x"}}
	})
	got := Prune(p)
	if got.Labels != nil || got.Annotations != nil || got.Spec.Containers != nil || len(got.OwnerReferences) != 1 {
		t.Fatalf("pruned pod keeps too much: %+v", got)
	}
	if want := []string{"old", "proj"}; !reflect.DeepEqual(SecretRefs(got), want) {
		t.Fatalf("secret refs %v, want %v", SecretRefs(got), want)
	}
	if got.Name != p.Name || got.Namespace != p.Namespace || got.UID != p.UID || got.Spec.NodeName != p.Spec.NodeName {
		t.Fatalf("pruned pod lost its identity: %+v", got.ObjectMeta)
	}
}

func TestEventTime(t *testing.T) {
	t0 := metav1.NewTime(now.Add(-time.Hour))
	cases := []struct {
		name string
		ev   corev1.Event
		want time.Time
	}{
		{"first only", corev1.Event{FirstTimestamp: t0}, t0.Time},
		{"last wins", corev1.Event{FirstTimestamp: t0, LastTimestamp: metav1.NewTime(now)}, now},
		{"eventTime", corev1.Event{EventTime: metav1.NewMicroTime(now)}, now},
		{"series", corev1.Event{EventTime: metav1.NewMicroTime(t0.Time), Series: &corev1.EventSeries{LastObservedTime: metav1.NewMicroTime(now)}}, now},
		{"creation as a last resort", corev1.Event{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now)}}, now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sandbox.EventTime(&tc.ev); !got.Equal(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	ev := &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-1", UID: "u1"}}
	with, without := KeyOf(pod())
	if PodKey(ev) != with {
		t.Fatalf("event key %q, pod key %q", PodKey(ev), with)
	}
	ev.InvolvedObject.UID = ""
	if PodKey(ev) != without {
		t.Fatalf("event key %q, pod key without UID %q", PodKey(ev), without)
	}
	ev.InvolvedObject.Kind = "Node"
	if PodKey(ev) != "" {
		t.Fatalf("a Node event has pod key %q", PodKey(ev))
	}
}

func TestMissingSecretInMount(t *testing.T) {
	for msg, want := range map[string]string{
		`MountVolume.SetUp failed for volume "token" : secret "calico-node-token-x7k2p" not found`: "calico-node-token-x7k2p",
		`MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`:                      "",
		`Unable to attach or mount volumes: timed out`:                                             "",
	} {
		if got := MissingSecretInMount(msg); got != want {
			t.Errorf("%q: got %q, want %q", msg, got, want)
		}
	}
}
