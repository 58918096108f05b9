package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The CNI plugin's words when the API server rejects its token, as
// containerd reports them in the kubelet's sandbox events.
const (
	cniAddUnauthorized = `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "0a1b2c": plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized`
	cniDelUnauthorized = `error killing pod: failed to "KillPodSandbox" for "u" with KillPodSandboxError: "rpc error: code = Unknown desc = failed to destroy network for sandbox \"0a1b2c\": plugin type=\"calico\" failed (delete): error getting ClusterInformation: connection is unauthorized: Unauthorized"`
	oldToken           = "calico-node-token-old"
)

// stuckRow is one row of report --stuck -o json.
type stuckRow struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	Why       string `json:"why"`
	Secret    string `json:"secret"`
	Owner     string `json:"owner"`
	Fix       string `json:"fix"`
}

// newStuckEnv is a namespace and a Node for report --stuck. No controller
// runs but the service-account ones: the test makes the ReplicaSets' pods
// itself, and at cleanup force-deletes every pod it made (no kubelet ever
// confirms a graceful deletion, and no namespace controller empties the
// namespace).
func newStuckEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	n := seq.Add(1)
	e := &env{t: t, ctx: ctx, client: cp.Client, ns: fmt.Sprintf("stuck-%d", n), node: fmt.Sprintf("stuck-node-%d", n), dir: t.TempDir()}
	core := cp.Client.CoreV1()
	_, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{})
	must(t, err)
	_, err = core.Nodes().Create(ctx, linuxNode(e.node), metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		bg := context.Background()
		if pods, err := core.Pods(e.ns).List(bg, metav1.ListOptions{}); err == nil {
			for i := range pods.Items {
				forceDeletePod(&pods.Items[i])
			}
		}
		_ = core.Events(e.ns).DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = core.Namespaces().Delete(bg, e.ns, metav1.DeleteOptions{})
		_ = core.Nodes().Delete(bg, e.node, metav1.DeleteOptions{})
	})
	e.kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, cp.Config))
	// Pods are admitted once the namespace's default ServiceAccount exists.
	e.eventually(time.Minute, "default ServiceAccount of "+e.ns, func() error {
		_, err := core.ServiceAccounts(e.ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return e
}

// deploymentRS creates a Deployment and a ReplicaSet it controls, as the
// deployment controller would, and returns the controller reference its
// pods carry.
func (e *env) deploymentRS(name string) metav1.OwnerReference {
	e.t.Helper()
	labels := map[string]string{"app": name}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	d, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	must(e.t, err)
	rs, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-7d4f9", OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	must(e.t, err)
	return *metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
}

// job creates a Job and returns the controller reference its pods carry.
func (e *env) job(name string) metav1.OwnerReference {
	e.t.Helper()
	j, err := e.client.BatchV1().Jobs(e.ns).Create(e.ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}}}, metav1.CreateOptions{})
	must(e.t, err)
	return *metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))
}

// secretVolume mounts a Secret as a volume; projected as a projected source.
func secretVolume(secret string, optional, projected bool) corev1.Volume {
	if projected {
		return corev1.Volume{Name: "projected-" + secret, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Optional: &optional}}}}}}
	}
	return corev1.Volume{Name: "token-" + secret, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret, Optional: &optional}}}
}

// newPod creates a pod on node, controlled by owner unless nil, with the
// volumes, in phase Pending with no container status: as the scheduler
// leaves it for a kubelet that has not got far.
func (e *env) newPod(name, node string, owner *metav1.OwnerReference, volumes ...corev1.Volume) *corev1.Pod {
	e.t.Helper()
	p, err := createPod(e.ctx, e.ns, name, node, owner, volumes...)
	must(e.t, err)
	return p
}

func createPod(ctx context.Context, ns, name, node string, owner *metav1.OwnerReference, volumes ...corev1.Volume) (*corev1.Pod, error) {
	no := false
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: &no, Volumes: volumes, Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return cp.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
}

// setPodStatus writes a pod's status as its kubelet would.
func (e *env) setPodStatus(p *corev1.Pod, phase corev1.PodPhase, state corev1.ContainerState) {
	e.t.Helper()
	must(e.t, writePodStatus(e.ctx, p, phase, state))
}

func writePodStatus(ctx context.Context, p *corev1.Pod, phase corev1.PodPhase, state corev1.ContainerState) error {
	p.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Image: "pause", State: state}}}
	_, err := cp.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// podEvent records a Warning event of the kubelet about the pod, seen at.
func (e *env) podEvent(p *corev1.Pod, reason, msg string, at time.Time) {
	e.t.Helper()
	must(e.t, recordPodEvent(e.ctx, p, reason, msg, at))
}

func recordPodEvent(ctx context.Context, p *corev1.Pod, reason, msg string, at time.Time) error {
	ts := metav1.NewTime(at)
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: p.Name + ".", Namespace: p.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning, Count: 3, FirstTimestamp: ts, LastTimestamp: ts,
		Source: corev1.EventSource{Component: "kubelet", Host: p.Spec.NodeName}}
	_, err := cp.Client.CoreV1().Events(p.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// stuckJSON runs report --stuck -o json with the kubeconfig, checks the
// document has exactly the contract's fields, and keeps this env's rows.
func (e *env) stuckJSON(kubeconfig string, extra ...string) (int, []stuckRow, string) {
	e.t.Helper()
	code, out := e.run(append([]string{"report", "--stuck", "--kubeconfig", kubeconfig, "-o", "json"}, extra...)...)
	doc, _, _ := strings.Cut(out, "\n}\n") // what --fix says follows on stderr
	doc += "\n}\n"
	var loose struct{ Stuck []map[string]any }
	dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.DisallowUnknownFields()
	var strict struct {
		Stuck []stuckRow `json:"stuck"`
	}
	if err := dec.Decode(&strict); err != nil || json.Unmarshal([]byte(doc), &loose) != nil || strict.Stuck == nil {
		e.t.Fatalf("report --stuck -o json (exit %d): %v\n%s", code, err, out)
	}
	var rows []stuckRow
	for i, r := range strict.Stuck {
		if len(loose.Stuck[i]) != 7 {
			e.t.Errorf("row %v has fields %v, want namespace, pod, node, why, secret, owner, fix", r, loose.Stuck[i])
		}
		if r.Namespace == e.ns {
			rows = append(rows, r)
		}
	}
	return code, rows, out
}

// podState is whether a pod exists and is being deleted.
func (e *env) podState(name string) string {
	e.t.Helper()
	p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "gone"
	case err != nil:
		e.t.Fatal(err)
	case p.DeletionTimestamp != nil:
		return "deleting"
	}
	return "present"
}

// TestStuck: report --stuck on the real API server, with pods in every
// shape the stale-token story leaves, and some it must not list. A pod
// stuck terminating is only one once its deletion timestamp plus grace
// period is more than 60 s ago: the API server sets the timestamp, so the
// test deletes that pod first and checks it is not listed before then, and
// is listed after.
func TestStuck(t *testing.T) {
	e := newStuckEnv(t)
	nodeA, nodeB := e.node, e.addNode("b")
	web := e.deploymentRS("web")

	// The pod that will be stuck terminating: Running, deleted with a 1 s
	// grace period (no kubelet confirms it), its teardown Unauthorized.
	term := e.newPod("web-term", nodeA, &web)
	e.setPodStatus(term, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}})
	one := int64(1)
	must(t, e.client.CoreV1().Pods(e.ns).Delete(e.ctx, term.Name, metav1.DeleteOptions{GracePeriodSeconds: &one}))
	e.podEvent(term, "FailedKillPodSandbox", cniDelUnauthorized, time.Now())
	deleted, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, term.Name, metav1.GetOptions{})
	must(t, err)
	stuckAt := deleted.DeletionTimestamp.Add(time.Second + 60*time.Second)

	if code, rows, out := e.stuckJSON(e.kubeconfig); code != 0 || len(rows) != 0 {
		t.Fatalf("before anything is stuck (the terminating pod is young): exit %d, rows %v\n%s", code, rows, out)
	}

	// The token Secret the pods mount is regenerated under a new name.
	secrets := e.client.CoreV1().Secrets(e.ns)
	for _, name := range []string{oldToken, "calico-node-token-new"} {
		_, err := secrets.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{})
		must(t, err)
	}
	must(t, secrets.Delete(e.ctx, oldToken, metav1.DeleteOptions{}))
	e.setCondition(nodeA, corev1.ConditionTrue, "TokenRejected", "the API server rejects the token in calico-kubeconfig", time.Now())

	mount := `MountVolume.SetUp failed for volume "token-` + oldToken + `" : secret "` + oldToken + `" not found`
	vol := e.newPod("web-vol", nodeA, &web, secretVolume(oldToken, false, false))
	e.podEvent(vol, "FailedMount", mount, time.Now())
	e.newPod("web-proj", nodeB, &web, secretVolume(oldToken, false, true))
	e.newPod("bare-secret", nodeB, nil, secretVolume(oldToken, false, false))
	nightly := e.job("nightly-1")
	e.newPod("job-secret", nodeB, &nightly, secretVolume(oldToken, false, true))
	e.newPod("fine-optional", nodeB, &web, secretVolume(oldToken, true, false), secretVolume("calico-node-token-new", false, true))
	e.newPod("fine-optional-projected", nodeB, nil, secretVolume(oldToken, true, true))
	running := e.newPod("fine-running", nodeA, &web, secretVolume(oldToken, false, false))
	e.setPodStatus(running, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}})

	cc := e.newPod("web-cc", nodeA, &web)
	e.setPodStatus(cc, corev1.PodPending, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}})
	e.podEvent(cc, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now())
	bareCC := e.newPod("bare-cc", nodeA, nil)
	e.podEvent(bareCC, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now().Add(-time.Minute))
	// Unauthorized once, then a sandbox failure of another kind: the latest
	// event is what counts.
	healed := e.newPod("fine-healed", nodeA, &web)
	e.podEvent(healed, "FailedCreatePodSandBox", cniAddUnauthorized, time.Now().Add(-2*time.Minute))
	e.podEvent(healed, "FailedCreatePodSandBox", `failed to reserve sandbox name "x": name is reserved`, time.Now().Add(-time.Minute))

	rejected := "node " + nodeA + "'s CalicoCNIConfigDrift condition is TokenRejected"
	row := func(pod, node, why, secret, owner string) stuckRow {
		return stuckRow{Namespace: e.ns, Pod: pod, Node: node, Why: why, Secret: secret, Owner: owner}
	}
	bare := []stuckRow{
		row("bare-cc", nodeA, "cniUnauthorized", "", ""),
		row("bare-secret", nodeB, "missingSecret", oldToken, ""),
	}
	owned := []stuckRow{
		row("job-secret", nodeB, "missingSecret", oldToken, "Job/nightly-1"),
		row("web-cc", nodeA, "cniUnauthorized", "", "Deployment/web"),
		row("web-proj", nodeB, "missingSecret", oldToken, "Deployment/web"),
		row("web-vol", nodeA, "missingSecret", oldToken, "Deployment/web"),
	}
	fixes := map[string][]string{
		"bare-cc":     {"bare pod: deleting it loses it; it must be recreated from its manifest", "FailedCreatePodSandBox", "connection is unauthorized: Unauthorized", rejected},
		"bare-secret": {"bare pod: deleting it loses it; it must be recreated from its manifest", "kubectl delete pod -n " + e.ns + " bare-secret"},
		"job-secret":  {"delete the pod: Job/nightly-1 recreates it"},
		"web-cc":      {"delete the pod: Deployment/web recreates it", "kubectl delete pod -n " + e.ns + " web-cc", "evidence: the kubelet's latest FailedCreatePodSandBox", rejected},
		"web-proj":    {"delete the pod: Deployment/web recreates it"},
		"web-vol":     {"delete the pod: Deployment/web recreates it", "evidence: the kubelet's FailedMount: " + mount, rejected},
		"web-term":    {"force-delete the pod: it is already being deleted and Deployment/web has replaced it", "FailedKillPodSandbox", rejected, "--grace-period=0 --force"},
	}
	all := append(append([]stuckRow{}, bare[0], bare[1]), owned...)
	code, rows, out := e.stuckJSON(e.kubeconfig)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	checkRows(t, out, rows, all, fixes)
	for _, r := range rows {
		if r.Pod == "web-proj" && strings.Contains(r.Fix, "FailedMount") {
			t.Errorf("a pod with no FailedMount event has one as evidence: %s", r.Fix)
		}
	}
	t.Logf("report --stuck -o json:\n%s", out)

	// The text: the table, then the fix of each pod.
	code, out = e.run("report", "--stuck", "--kubeconfig", e.kubeconfig)
	lines := strings.Split(out, "\n")
	if code != 1 || !reflect.DeepEqual(strings.Fields(lines[0]), []string{"NAMESPACE", "POD", "NODE", "WHY", "SECRET", "OWNER"}) {
		t.Fatalf("report --stuck: exit %d\n%s", code, out)
	}
	for _, r := range all {
		wantLine := strings.Join([]string{r.Namespace, r.Pod, r.Node, r.Why, cmpOr(r.Secret, "-"), cmpOr(r.Owner, "-")}, " ")
		if !containsLine(lines, func(l string) bool { return strings.Join(strings.Fields(l), " ") == wantLine }) ||
			!containsLine(lines, func(l string) bool { return strings.HasPrefix(l, "fix "+r.Namespace+"/"+r.Pod+": "+fixes[r.Pod][0]) }) {
			t.Errorf("no row %q with its fix line in\n%s", wantLine, out)
		}
	}
	t.Logf("report --stuck:\n%s", out)

	// --fix without --yes, off a terminal: says what it would do, deletes nothing.
	code, out = e.run("report", "--stuck", "--fix", "--kubeconfig", e.kubeconfig)
	if code != 1 || !strings.Contains(out, "would delete pod "+e.ns+"/web-vol (Deployment/web recreates it)") || !strings.Contains(out, "nothing deleted") {
		t.Fatalf("--fix without --yes: exit %d\n%s", code, out)
	}
	for _, r := range all {
		if s := e.podState(r.Pod); s != "present" {
			t.Fatalf("--fix without --yes: pod %s is %s", r.Pod, s)
		}
	}

	// --fix --yes deletes the pods a controller owns, and only those.
	code, rows, out = e.stuckJSON(e.kubeconfig, "--fix", "--yes")
	if code != 1 || !strings.Contains(out, "deleted pod "+e.ns+"/web-cc (Deployment/web recreates it)") || !strings.Contains(out, "left bare pod "+e.ns+"/bare-cc") {
		t.Fatalf("--fix --yes: exit %d\n%s", code, out)
	}
	checkRows(t, out, rows, all, fixes)
	for _, r := range owned {
		if s := e.podState(r.Pod); s != "deleting" {
			t.Errorf("--fix --yes: owned pod %s is %s, want deleting", r.Pod, s)
		}
	}
	for _, name := range []string{"bare-cc", "bare-secret", "fine-optional", "fine-optional-projected", "fine-running", "fine-healed"} {
		if s := e.podState(name); s != "present" {
			t.Errorf("--fix --yes: pod %s is %s, want present", name, s)
		}
	}
	// The deleted pods are the kubelet's to finish now: only the bare ones
	// are left stuck, and the exit code still says so.
	code, rows, out = e.stuckJSON(e.kubeconfig)
	if code != 1 {
		t.Fatalf("after --fix: exit %d, want 1\n%s", code, out)
	}
	checkRows(t, out, rows, bare, fixes)

	// The terminating pod: listed once its deletion timestamp plus grace
	// period is more than 60 s ago, and --fix removes it at once.
	if time.Now().After(stuckAt) {
		t.Fatalf("the steps above took past %s: the terminating pod's young state was not checked in time", stuckAt)
	}
	// Polled every 2 s: each poll is a run of the binary.
	err = wait.PollUntilContextTimeout(e.ctx, 2*time.Second, time.Until(stuckAt)+30*time.Second, true, func(context.Context) (bool, error) {
		_, rows, _ := e.stuckJSON(e.kubeconfig)
		ended := time.Now() // the binary judged before this
		for _, r := range rows {
			if r.Pod == "web-term" && ended.Before(stuckAt) {
				return false, fmt.Errorf("the terminating pod was listed by %s, before %s", ended, stuckAt)
			}
			if r.Pod == "web-term" {
				return true, nil
			}
		}
		return false, nil
	})
	must(t, err)
	withTerm := append(append([]stuckRow{}, bare...), row("web-term", nodeA, "cniUnauthorized", "", "Deployment/web"))
	code, rows, out = e.stuckJSON(e.kubeconfig, "--fix", "--yes")
	if code != 1 || !strings.Contains(out, "force-deleted pod "+e.ns+"/web-term") {
		t.Fatalf("--fix --yes on the terminating pod: exit %d\n%s", code, out)
	}
	checkRows(t, out, rows, withTerm, fixes)
	if s := e.podState("web-term"); s != "gone" {
		t.Fatalf("terminating pod is %s after --fix --yes, want gone", s)
	}
}
