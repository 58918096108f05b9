package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/calico-cni-sync/calico-cni-sync/sync/stuck"
)

// stuckPod is a stuck pod: what is printed, and what --fix needs.
type stuckPod struct {
	stuck.Finding
	uid         string
	terminating bool
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
	res, err := stuck.Scan(ctx, reader, meta, time.Now())
	if err != nil {
		return exitError, err
	}
	found := make([]stuckPod, len(res.Pods))
	for i, p := range res.Pods {
		found[i] = stuckPod{Finding: p.Finding, uid: p.UID, terminating: p.Terminating}
	}
	sio := stuckIO{stdin: os.Stdin, terminal: term.IsTerminal(int(os.Stdin.Fd())), stdout: stdout, stderr: os.Stderr}
	code, err := reportStuck(ctx, o, sio, found, deletePod(client))
	if err == nil && len(res.Unlisted) > 0 {
		noteUnlisted(sio.stderr, res.Unlisted)
	}
	return code, err
}

// noteUnlisted says, after the report, where missing Secrets were judged
// from the kubelet's events alone, and how to have them listed.
func noteUnlisted(w io.Writer, namespaces []string) {
	where := strings.Join(namespaces, ", ")
	if len(namespaces) > 3 {
		where = fmt.Sprintf("%s and %d more", strings.Join(namespaces[:3], ", "), len(namespaces)-3)
	}
	_, _ = fmt.Fprintf(w, "note: listing Secrets is not granted (namespace %s): a missing Secret is known there only from the kubelet's FailedMount events, which the API server keeps an hour by default; to check the Secrets' names too, apply manifests/report/secrets\n", where)
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
