package stuck

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/pager"

	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// stuckPage is the page size of every list: memory stays bounded by a page,
// the events kept and the stuck pods found, whatever the cluster's size.
const stuckPage = 500

// notStartedPods selects the pods that may wait for a Secret or a sandbox.
// Pods stuck terminating may be in any phase; they are found from their
// sandbox events instead of by listing every pod.
const notStartedPods = "status.phase!=Running,status.phase!=Succeeded,status.phase!=Failed"

// Pod is a stuck pod: what is printed, and what --fix needs.
type Pod struct {
	Finding
	UID         string
	Terminating bool
}

// Result is what Scan found.
type Result struct {
	// Pods are the stuck pods, by namespace and name.
	Pods []Pod
	// Unlisted are the namespaces, sorted, whose Secrets could not be
	// listed (403: the list is not granted); a missing Secret there was
	// judged from the kubelet's FailedMount events alone.
	Unlisted []string
}

// scan reads what report --stuck judges, in two passes over the pods
// not yet started so as to keep no pod but the stuck ones: the first judges
// the pods that mount no Secret and notes the Secrets the others mount; once
// the metadata-only list has said which of those exist, the second judges
// the others. Between them it keeps the latest sandbox and FailedMount
// event per pod and the Secrets FailedMount events say are not found
// (bounded by the events the API server holds), and the names of the
// Secrets mounted (bounded by the distinct names, not the pods).
type scan struct {
	client kubernetes.Interface
	meta   metadata.Interface
	now    time.Time

	sandbox  Latest            // sandbox events
	mounts   Latest            // FailedMount events naming a missing Secret
	notFound NotFound          // the Secrets those events name, per pod
	secrets  SecretSet         // the Secrets the pods mount
	unlisted map[string]bool   // namespaces whose Secrets may not be listed
	seen     map[string]bool   // namespace/name of listed pods with an Unauthorized sandbox
	found    map[string]judged // namespace/name -> a stuck pod
}

// judged is a stuck pod, pruned, and why.
type judged struct {
	pod *corev1.Pod
	v   Verdict
}

// Scan finds the pods a stale or rejected CNI token left stuck, and says
// how to fix each. client should have kubectl's request rate: the scan
// pages through the pods not yet started and the sandbox and FailedMount
// events, lists Secrets' metadata only, and makes a GET per stuck pod's
// owner, node and, for a pod not pending, the pod. Listing Secrets is
// optional: where it is refused, the FailedMount events say which are
// missing.
func Scan(ctx context.Context, client kubernetes.Interface, meta metadata.Interface, now time.Time) (Result, error) {
	s := &scan{client: client, meta: meta, now: now}
	pods, err := s.run(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Pods: pods}
	for ns := range s.unlisted {
		res.Unlisted = append(res.Unlisted, ns)
	}
	sort.Strings(res.Unlisted)
	return res, nil
}

func (s *scan) run(ctx context.Context) ([]Pod, error) {
	s.sandbox, s.mounts, s.notFound, s.secrets, s.unlisted = Latest{}, Latest{}, NotFound{}, SecretSet{}, map[string]bool{}
	s.seen, s.found = map[string]bool{}, map[string]judged{}
	for _, reason := range append([]string{ReasonFailedMount}, SandboxReasons...) {
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
		refs := SecretRefs(pod)
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
			if len(SecretRefs(pod)) > 0 {
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
func (s *scan) list(ctx context.Context, what string, opts metav1.ListOptions, list func(metav1.ListOptions) (runtime.Object, error), each func(runtime.Object)) error {
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
func (s *scan) listEvents(ctx context.Context, reason string) error {
	opts := metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,reason=" + reason}
	return s.list(ctx, reason+" events", opts, func(opts metav1.ListOptions) (runtime.Object, error) {
		return s.client.CoreV1().Events("").List(ctx, opts)
	}, func(obj runtime.Object) {
		switch ev := obj.(*corev1.Event); {
		case reason != ReasonFailedMount:
			s.sandbox.Add(ev)
		case MissingSecretInMount(ev.Message) != "":
			s.mounts.Add(ev)
			s.notFound.Add(ev)
		}
	})
}

// judge keeps the pod, pruned, when it is stuck.
func (s *scan) judge(pod *corev1.Pod) {
	facts := Facts{Now: s.now, Sandbox: s.sandbox.Of(pod), NotFound: s.notFound.Of(pod)}
	if !s.unlisted[pod.Namespace] {
		facts.SecretExists = func(name string) bool { return s.secrets.Exists(pod.Namespace, name) }
	}
	if m := s.mounts.Of(pod); m != nil {
		facts.MountMessage = m.Message
	}
	if v, ok := Judge(pod, facts); ok {
		s.found[pod.Namespace+"/"+pod.Name] = judged{pod: Prune(pod), v: v}
	}
}

// terminatingPods reads the pods whose latest sandbox event is Unauthorized
// and that the list of not-started pods did not hold: a pod stuck
// terminating is usually Running.
func (s *scan) terminatingPods(ctx context.Context) error {
	keys := make([]string, 0, len(s.sandbox))
	for key := range s.sandbox {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		ns, name, uid := SplitPodKey(key)
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
// the metadata-only API: names, never data. RBAC cannot grant a list of
// names without the data, so the list is granted only on request
// (manifests/report/secrets); a namespace where it is refused is left to
// the kubelet's FailedMount events.
func (s *scan) listSecrets(ctx context.Context) error {
	res := s.meta.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"})
	for ns := range s.secrets {
		err := s.list(ctx, "Secrets (metadata) in "+ns, metav1.ListOptions{}, func(opts metav1.ListOptions) (runtime.Object, error) {
			return res.Namespace(ns).List(ctx, opts)
		}, func(obj runtime.Object) {
			s.secrets.Found(ns, obj.(*metav1.PartialObjectMetadata).Name)
		})
		if apierrors.IsForbidden(err) {
			s.unlisted[ns] = true
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// describe reads the owner and the node's condition of each stuck pod
// (each once) and says how to fix it.
func (s *scan) describe(ctx context.Context) ([]Pod, error) {
	nodes := map[string]string{}
	owners := map[string]*metav1.OwnerReference{}
	out := make([]Pod, 0, len(s.found))
	for _, j := range s.found {
		pod, v := j.pod, j.v
		owner, err := TopOwner(pod, func(ns string, ref metav1.OwnerReference) (*metav1.OwnerReference, error) {
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
		out = append(out, Pod{Finding: Describe(pod, v, owner, evidence), UID: string(pod.UID), Terminating: v.Terminating})
	}
	sort.Slice(out, func(i, j int) bool {
		return cmp.Or(cmp.Compare(out[i].Namespace, out[j].Namespace), cmp.Compare(out[i].Pod, out[j].Pod)) < 0
	})
	return out, nil
}

// tokenEvidence is what the node's condition says of the CNI's token.
func (s *scan) tokenEvidence(ctx context.Context, node string) (string, error) {
	n, err := s.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get node %s: %w", node, err)
	}
	return status.TokenEvidence(node, status.ConditionOf(n)), nil
}
