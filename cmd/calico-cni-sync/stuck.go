package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/pager"

	"github.com/calico-cni-sync/calico-cni-sync/sync"
	"github.com/calico-cni-sync/calico-cni-sync/sync/stuck"
)

// stuckPage is the page size of every list: memory stays bounded by a page,
// the events kept and the stuck pods found, whatever the cluster's size.
const stuckPage = 500

// notStartedPods selects the pods that may wait for a Secret or a sandbox.
// Pods stuck terminating may be in any phase; they are found from their
// sandbox events instead of by listing every pod.
const notStartedPods = "status.phase!=Running,status.phase!=Succeeded,status.phase!=Failed"

// stuckPod is a stuck pod: what is printed, and what --fix needs.
type stuckPod struct {
	stuck.Finding
	uid         string
	terminating bool
}

// stuckScan reads what report --stuck judges, in two passes over the pods
// not yet started so as to keep no pod but the stuck ones: the first judges
// the pods that mount no Secret and notes the Secrets the others mount; once
// the metadata-only list has said which of those exist, the second judges
// the others. Between them it keeps the latest sandbox and FailedMount
// event per pod (bounded by the events the API server holds) and the names
// of the Secrets mounted (bounded by the distinct names, not the pods).
type stuckScan struct {
	client kubernetes.Interface
	meta   metadata.Interface
	now    time.Time

	sandbox stuck.Latest      // sandbox events
	mounts  stuck.Latest      // FailedMount events naming a missing Secret
	secrets stuck.SecretSet   // the Secrets the pods mount
	seen    map[string]bool   // namespace/name of listed pods with an Unauthorized sandbox
	found   map[string]judged // namespace/name -> a stuck pod
}

// judged is a stuck pod, pruned, and why.
type judged struct {
	pod *corev1.Pod
	v   stuck.Verdict
}

// runStuck lists the pods a stale or rejected CNI token left stuck and, with
// --fix, deletes those a controller owns. client (the agent's request rate)
// makes the deletions: each makes a controller create a pod, so they go at a
// gentle pace; the reads go through a client of their own at kubectl's rate
// (a GET per stuck pod's owner, node and, for a pod not pending, the pod).
func runStuck(ctx context.Context, o *Options, client kubernetes.Interface, stdout io.Writer) (int, error) {
	cfg, err := restConfig(o)
	if err != nil {
		return exitError, err
	}
	cfg.UserAgent = "calico-cni-sync/" + buildVersion(version, readBuildInfo())
	cfg.QPS, cfg.Burst = 50, 300
	reader, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return exitError, fmt.Errorf("create API client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return exitError, fmt.Errorf("create metadata API client: %w", err)
	}
	s := &stuckScan{client: reader, meta: meta, now: time.Now()}
	found, err := s.run(ctx)
	if err != nil {
		return exitError, err
	}
	sio := stuckIO{stdin: os.Stdin, terminal: term.IsTerminal(int(os.Stdin.Fd())), stdout: stdout, stderr: os.Stderr}
	return reportStuck(ctx, o, sio, found, deletePod(client))
}

func (s *stuckScan) run(ctx context.Context) ([]stuckPod, error) {
	s.sandbox, s.mounts, s.secrets, s.seen, s.found = stuck.Latest{}, stuck.Latest{}, stuck.SecretSet{}, map[string]bool{}, map[string]judged{}
	for _, reason := range append([]string{stuck.ReasonFailedMount}, stuck.SandboxReasons...) {
		if err := s.listEvents(ctx, reason); err != nil {
			return nil, err
		}
	}
	pending := func(each func(*corev1.Pod)) error {
		return s.list(ctx, "pods", metav1.ListOptions{FieldSelector: notStartedPods}, func(opts metav1.ListOptions) (runtime.Object, error) {
			return s.client.CoreV1().Pods("").List(ctx, opts)
		}, func(obj runtime.Object) { each(obj.(*corev1.Pod)) })
	}
	err := pending(func(pod *corev1.Pod) {
		if s.sandbox.Of(pod).Unauthorized() {
			s.seen[pod.Namespace+"/"+pod.Name] = true
		}
		refs := stuck.SecretRefs(pod)
		for _, name := range refs {
			s.secrets.Want(pod.Namespace, name)
		}
		if len(refs) == 0 {
			s.judge(pod)
		}
	})
	if err == nil {
		err = s.terminatingPods(ctx)
	}
	if err == nil {
		err = s.listSecrets(ctx)
	}
	if err == nil && len(s.secrets) > 0 {
		err = pending(func(pod *corev1.Pod) {
			if len(stuck.SecretRefs(pod)) > 0 {
				s.judge(pod)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	return s.describe(ctx)
}

// list pages through a list, handing each item to each.
func (s *stuckScan) list(ctx context.Context, what string, opts metav1.ListOptions, list func(metav1.ListOptions) (runtime.Object, error), each func(runtime.Object)) error {
	opts.Limit = stuckPage
	err := pager.New(func(_ context.Context, opts metav1.ListOptions) (runtime.Object, error) { return list(opts) }).
		EachListItem(ctx, opts, func(obj runtime.Object) error { each(obj); return nil })
	if err != nil {
		return fmt.Errorf("list %s: %w", what, err)
	}
	return nil
}

// listEvents keeps, per pod, the latest event of the reason (FailedMount:
// only those naming a missing Secret).
func (s *stuckScan) listEvents(ctx context.Context, reason string) error {
	opts := metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,reason=" + reason}
	return s.list(ctx, reason+" events", opts, func(opts metav1.ListOptions) (runtime.Object, error) {
		return s.client.CoreV1().Events("").List(ctx, opts)
	}, func(obj runtime.Object) {
		switch ev := obj.(*corev1.Event); {
		case reason != stuck.ReasonFailedMount:
			s.sandbox.Add(ev)
		case stuck.MissingSecretInMount(ev.Message) != "":
			s.mounts.Add(ev)
		}
	})
}

// judge keeps the pod, pruned, when it is stuck.
func (s *stuckScan) judge(pod *corev1.Pod) {
	facts := stuck.Facts{Now: s.now, Sandbox: s.sandbox.Of(pod), SecretExists: func(name string) bool { return s.secrets.Exists(pod.Namespace, name) }}
	if m := s.mounts.Of(pod); m != nil {
		facts.MountMessage = m.Message
	}
	if v, ok := stuck.Judge(pod, facts); ok {
		s.found[pod.Namespace+"/"+pod.Name] = judged{pod: stuck.Prune(pod), v: v}
	}
}

// terminatingPods reads the pods whose latest sandbox event is Unauthorized
// and that the list of not-started pods did not hold: a pod stuck
// terminating is usually Running.
func (s *stuckScan) terminatingPods(ctx context.Context) error {
	keys := make([]string, 0, len(s.sandbox))
	for key := range s.sandbox {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		ns, name, uid := stuck.SplitPodKey(key)
		if s.seen[ns+"/"+name] || !s.sandbox[key].Unauthorized() {
			continue
		}
		pod, err := s.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get pod %s/%s: %w", ns, name, err)
		}
		s.seen[ns+"/"+name] = true
		if (uid == "" || string(pod.UID) == uid) && pod.DeletionTimestamp != nil {
			s.judge(pod)
		}
	}
	return nil
}

// listSecrets learns which of the Secrets the candidates name exist, from
// the metadata-only API: names, never data.
func (s *stuckScan) listSecrets(ctx context.Context) error {
	res := s.meta.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"})
	for ns := range s.secrets {
		err := s.list(ctx, "Secrets (metadata) in "+ns, metav1.ListOptions{}, func(opts metav1.ListOptions) (runtime.Object, error) {
			return res.Namespace(ns).List(ctx, opts)
		}, func(obj runtime.Object) {
			s.secrets.Found(ns, obj.(*metav1.PartialObjectMetadata).Name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// describe reads the owner and the node's condition of each stuck pod
// (each once) and says how to fix it.
func (s *stuckScan) describe(ctx context.Context) ([]stuckPod, error) {
	nodes := map[string]string{}
	owners := map[string]*metav1.OwnerReference{}
	out := make([]stuckPod, 0, len(s.found))
	for _, j := range s.found {
		pod, v := j.pod, j.v
		owner, err := stuck.TopOwner(pod, func(ns string, ref metav1.OwnerReference) (*metav1.OwnerReference, error) {
			key := ns + "/" + string(ref.UID)
			if c, seen := owners[key]; seen {
				return c, nil
			}
			rs, err := s.client.AppsV1().ReplicaSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && rs.UID != ref.UID) {
				owners[key] = nil
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("get ReplicaSet %s/%s: %w", ns, ref.Name, err)
			}
			owners[key] = metav1.GetControllerOf(rs)
			return owners[key], nil
		})
		if err != nil {
			return nil, err
		}
		node := pod.Spec.NodeName
		evidence, seen := nodes[node]
		if !seen && node != "" {
			if evidence, err = s.tokenEvidence(ctx, node); err != nil {
				return nil, err
			}
			nodes[node] = evidence
		}
		out = append(out, stuckPod{Finding: stuck.Describe(pod, v, owner, evidence), uid: string(pod.UID), terminating: v.Terminating})
	}
	sort.Slice(out, func(i, j int) bool {
		return cmp.Or(cmp.Compare(out[i].Namespace, out[j].Namespace), cmp.Compare(out[i].Pod, out[j].Pod)) < 0
	})
	return out, nil
}

// tokenEvidence is what the node's condition says of the CNI's token.
func (s *stuckScan) tokenEvidence(ctx context.Context, node string) (string, error) {
	n, err := s.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get node %s: %w", node, err)
	}
	for i := range n.Status.Conditions {
		if c := &n.Status.Conditions[i]; c.Type == sync.ConditionType {
			return stuck.TokenEvidence(node, c), nil
		}
	}
	return "", nil
}

// stuckIO is where report --stuck asks and tells.
type stuckIO struct {
	stdin    io.Reader
	terminal bool // stdin is a terminal: ask before deleting
	stdout   io.Writer
	stderr   io.Writer
}

// podDeleter deletes a pod of the given UID, at once when grace0.
type podDeleter func(ctx context.Context, namespace, name, uid string, grace0 bool) error

func deletePod(client kubernetes.Interface) podDeleter {
	return func(ctx context.Context, namespace, name, uid string, grace0 bool) error {
		// The UID precondition: never a pod a controller made since under
		// the same name (a StatefulSet's).
		opts := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(uid)}
		if grace0 {
			opts.GracePeriodSeconds = new(int64)
		}
		return client.CoreV1().Pods(namespace).Delete(ctx, name, opts)
	}
}

// reportStuck prints the stuck pods (a table then the fix of each, or the
// JSON document) and, with --fix, deletes those a controller owns. What
// --fix does or would do goes to stdout after the table, to stderr under
// -o json (stdout holds the document alone).
func reportStuck(ctx context.Context, o *Options, sio stuckIO, found []stuckPod, del podDeleter) (int, error) {
	rows := make([]stuck.Finding, 0, len(found))
	for _, f := range found {
		rows = append(rows, f.Finding)
	}
	say := sio.stdout
	if o.Output == "json" {
		say = sio.stderr
		if err := printJSON(sio.stdout, map[string]any{"stuck": rows}); err != nil {
			return exitError, err
		}
	} else {
		printStuckTable(sio.stdout, rows)
	}
	code := exitOK
	if len(found) > 0 {
		code = exitDrift
	}
	if !o.Fix || len(found) == 0 {
		return code, nil
	}
	var owned []stuckPod
	for _, f := range found {
		if f.Owner == "" {
			_, _ = fmt.Fprintf(say, "left bare pod %s/%s: deleting it loses it; recreate it from its manifest\n", f.Namespace, f.Pod)
			continue
		}
		owned = append(owned, f)
	}
	if len(owned) == 0 {
		return code, nil
	}
	if !o.Yes && !confirm(sio, len(owned)) {
		for _, f := range owned {
			_, _ = fmt.Fprintf(say, "would delete pod %s/%s (%s recreates it)\n", f.Namespace, f.Pod, f.Owner)
		}
		_, _ = fmt.Fprintln(say, "nothing deleted: give --yes, or answer yes at the prompt on a terminal")
		return code, nil
	}
	for _, f := range owned {
		err := del(ctx, f.Namespace, f.Pod, f.uid, f.terminating)
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			_, _ = fmt.Fprintf(say, "pod %s/%s is gone already\n", f.Namespace, f.Pod)
		case apierrors.IsForbidden(err):
			return exitError, fmt.Errorf("delete pod %s/%s: %w: --fix needs the right to delete pods (bind the ClusterRole of manifests/report/fix), or delete it yourself: kubectl delete pod -n %s %s",
				f.Namespace, f.Pod, err, f.Namespace, f.Pod)
		case err != nil:
			return exitError, fmt.Errorf("delete pod %s/%s: %w", f.Namespace, f.Pod, err)
		case f.terminating:
			_, _ = fmt.Fprintf(say, "force-deleted pod %s/%s (already terminating; %s has replaced it)\n", f.Namespace, f.Pod, f.Owner)
		default:
			_, _ = fmt.Fprintf(say, "deleted pod %s/%s (%s recreates it)\n", f.Namespace, f.Pod, f.Owner)
		}
	}
	return code, nil
}

// confirm asks on a terminal whether to delete n pods; anything but "yes"
// is a no. Off a terminal (a pipe, a CI job) it asks nothing and says no.
func confirm(sio stuckIO, n int) bool {
	if !sio.terminal {
		return false
	}
	_, _ = fmt.Fprintf(sio.stderr, "Delete the %d stuck pods a controller owns? Type yes to delete: ", n)
	line, _ := bufio.NewReader(sio.stdin).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// printStuckTable prints the table, then the fix of each pod.
func printStuckTable(w io.Writer, rows []stuck.Finding) {
	dash := func(s string) string { return cmp.Or(s, "-") }
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAMESPACE\tPOD\tNODE\tWHY\tSECRET\tOWNER")
	for _, r := range rows {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Pod, dash(r.Node), r.Why, dash(r.Secret), dash(r.Owner))
	}
	_ = tw.Flush()
	if len(rows) > 0 {
		_, _ = fmt.Fprintln(w)
	}
	for _, r := range rows {
		_, _ = fmt.Fprintf(w, "fix %s/%s: %s\n", r.Namespace, r.Pod, r.Fix)
	}
}
