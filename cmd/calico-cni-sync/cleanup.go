package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// agentLabel is the label the manifests put on the agent's pods and the
// agent on its Leases.
const agentLabel = "app.kubernetes.io/name=calico-cni-sync"

// addCleanupFlags registers what cleanup takes: whom to ask, and which
// nodes. It never reads a node's files, so no file flag is offered.
func (o *Options) addCleanupFlags(fs *pflag.FlagSet) {
	all := pflag.NewFlagSet("cleanup", pflag.ContinueOnError)
	o.AddFlags(all)
	for _, name := range []string{"kubeconfig", "context", "node-name", "log-format", "v"} {
		fs.AddFlag(all.Lookup(name))
	}
	fs.BoolVar(&o.CleanupAll, "all", false, "clean up after the agent on every node")
}

// runCleanup removes what the agent leaves in the cluster once it is
// uninstalled: each node's Lease and the Node condition it owns. The CNI
// files and the record on the nodes are left as they are: they are the
// nodes' working configuration. It refuses while an agent pod is still on
// a node it would clean: that agent would put both back.
func runCleanup(ctx context.Context, o *Options, stdout, stderr io.Writer) (int, error) {
	if o.CleanupAll == o.given("node-name") {
		return exitError, usageError{errors.New("cleanup needs --node-name NODE or --all (not both): it removes the agent's Lease and Node condition for that node, or for every node")}
	}
	cfg, err := restConfig(o)
	if err != nil {
		return exitError, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return exitError, err
	}
	node := ""
	if !o.CleanupAll {
		node = o.NodeName
	}
	if err := noAgentRunning(ctx, client, node, stderr); err != nil {
		return exitError, err
	}
	removed := 0
	leases, err := client.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: agentLabel})
	if err != nil {
		return exitError, fmt.Errorf("list the agents' Leases: %w", err)
	}
	for _, l := range leases.Items {
		owner, ok := strings.CutPrefix(l.Name, status.LeasePrefix)
		if !ok || (node != "" && owner != node) {
			continue
		}
		pre := metav1.Preconditions{UID: &l.UID}
		err := client.CoordinationV1().Leases(l.Namespace).Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &pre})
		if err != nil && !apierrors.IsNotFound(err) {
			return exitError, fmt.Errorf("delete Lease %s/%s: %w", l.Namespace, l.Name, err)
		}
		_, _ = fmt.Fprintf(stdout, "lease %s/%s deleted\n", l.Namespace, l.Name)
		removed++
	}
	var nodes []corev1.Node
	if node != "" {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return exitError, fmt.Errorf("get Node %s: %w", node, err)
		default:
			nodes = append(nodes, *n)
		}
	} else {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return exitError, fmt.Errorf("list Nodes: %w", err)
		}
		nodes = list.Items
	}
	for i := range nodes {
		n := &nodes[i]
		for _, typ := range agentConditions(n) {
			// A strategic merge that deletes the condition by its type,
			// the key the kubelet's conditions merge on: the other
			// conditions are not touched, whoever writes them meanwhile.
			patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"$patch":"delete"}]}}`, typ)
			_, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
			if err != nil && !apierrors.IsNotFound(err) {
				return exitError, fmt.Errorf("remove the %s condition of Node %s: %w", typ, n.Name, err)
			}
			_, _ = fmt.Fprintf(stdout, "node/%s condition %s removed\n", n.Name, typ)
			removed++
		}
	}
	if removed == 0 {
		_, _ = fmt.Fprintln(stderr, "Nothing to clean up: no Lease and no condition of calico-cni-sync found")
	}
	return exitOK, nil
}

// agentConditions are the agent's condition types the Node has:
// CalicoCNIConfigDrift and CalicoCNICredentialHealthy.
func agentConditions(n *corev1.Node) []corev1.NodeConditionType {
	var out []corev1.NodeConditionType
	for _, c := range n.Status.Conditions {
		if c.Type == status.ConditionType || c.Type == status.CredentialConditionType {
			out = append(out, c.Type)
		}
	}
	return out
}

// agentGoneWait is how long cleanup waits for agent pods that are going
// away (being deleted, or left by a deleted DaemonSet for the garbage
// collector) to be gone: kubectl delete -k returns before they are.
var agentGoneWait = 2 * time.Minute

// noAgentRunning fails when an agent pod is on the node (any node when
// node is empty) and its DaemonSet is still there: it would renew its Lease
// and patch its condition again. Pods on their way out are waited for, to
// the end of their grace period at most.
func noAgentRunning(ctx context.Context, client kubernetes.Interface, node string, stderr io.Writer) error {
	opts := metav1.ListOptions{LabelSelector: agentLabel}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	said := map[string]bool{}
	var running error
	err := wait.PollUntilContextTimeout(ctx, time.Second, agentGoneWait, true, func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return false, fmt.Errorf("list the agent's pods: %w", err)
		}
		waiting := false
		for _, p := range pods.Items {
			switch {
			case p.DeletionTimestamp != nil && time.Now().After(p.DeletionTimestamp.Time):
				// Past its grace period: the kubelet has killed it, or
				// the node is gone and nothing runs it.
				continue
			case p.DeletionTimestamp == nil && ownerAlive(ctx, client, &p):
				running = fmt.Errorf("the agent still runs (pod %s/%s on node %s): uninstall it first (kubectl delete -k ...), or it puts its Lease and condition back", p.Namespace, p.Name, p.Spec.NodeName)
				return false, running
			}
			// Terminating, or left by its deleted DaemonSet for the
			// garbage collector: it may still write once.
			waiting = true
			if key := p.Namespace + "/" + p.Name; !said[key] {
				said[key] = true
				_, _ = fmt.Fprintf(stderr, "waiting for the agent's pod %s to stop\n", key)
			}
		}
		return !waiting, nil
	})
	if running != nil {
		return running
	}
	if err != nil {
		return fmt.Errorf("the agent's pods are still there after %s: %w", agentGoneWait, err)
	}
	return nil
}

// ownerAlive reports whether the pod's controller still exists (a pod with
// none is taken for a running agent).
func ownerAlive(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) bool {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "DaemonSet" {
		return true
	}
	ds, err := client.AppsV1().DaemonSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	return err != nil || ds.UID == ref.UID
}
