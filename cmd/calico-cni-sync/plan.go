package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
	"github.com/calico-cni-sync/calico-cni-sync/sync/plan"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
	"github.com/calico-cni-sync/calico-cni-sync/sync/status"
)

// planListed is how many node names plan keeps per group.
const planListed = 10

// runPlan prints what applying -f's ConfigMap would change on every node.
func runPlan(ctx context.Context, o *Options, stdout, stderr io.Writer) (int, error) {
	cm, err := readProposed(o.PlanFile, os.Stdin)
	if err != nil {
		return exitError, err
	}
	req := plan.Request{Proposed: cm, DaemonSet: o.CalicoDaemonSet, AgentEnv: os.LookupEnv,
		NetDir: o.CNINetDir, KubeconfigName: o.CNIKubeconfigName, Listed: planListed}
	if o.given("cni-conf-name") {
		req.ConfName = o.CNIConfName
	}
	if o.CAFile != "" {
		if req.CA, err = readCAFile(o.CAFile); err != nil {
			return exitError, err
		}
	}
	if o.ManifestFile != "" {
		data, err := os.ReadFile(o.ManifestFile)
		if err != nil {
			return exitError, fmt.Errorf("read --manifest-file: %w", err)
		}
		m, err := installcni.ParseManifest(data)
		if err != nil {
			return exitError, fmt.Errorf("--manifest-file %s: %w", o.ManifestFile, err)
		}
		req.Cluster, req.Nodes = inputs.ManifestCluster{Manifest: m}, []string{o.NodeName}
	} else {
		cfg, err := restConfig(o)
		if err != nil {
			return exitError, err
		}
		client, err := newClient(cfg)
		if err != nil {
			return exitError, err
		}
		nodes, err := status.ListNodes(ctx, client, o.Selector)
		if err != nil {
			return exitError, err
		}
		if len(nodes) == 0 {
			_, _ = fmt.Fprintf(stderr, "No nodes found (selector %q)\n", o.Selector)
			return exitError, fmt.Errorf("no node to plan for (selector %q)", o.Selector)
		}
		for _, n := range nodes {
			req.Nodes = append(req.Nodes, n.Name)
		}
		req.Cluster = plan.NewAPICluster(client, nodes)
		req.AgentEnv = serviceEnv(ctx, client, os.LookupEnv)
	}
	res, err := plan.Plan(ctx, req)
	if err != nil {
		return exitError, err
	}
	if o.Output == "json" {
		if err := printJSON(stdout, res); err != nil {
			return exitError, err
		}
	} else {
		printPlan(stdout, res)
	}
	code := exitOK
	for _, g := range res.Groups {
		switch g.Outcome {
		case plan.Failed:
			return exitError, fmt.Errorf("%s on %d nodes: %s", g.DaemonSet, g.Nodes.Count, g.Error)
		case plan.Change:
			code = exitDrift
		}
	}
	return code, nil
}

// readProposed reads -f: one ConfigMap, as kubectl apply -f takes it.
func readProposed(path string, stdin io.Reader) (*corev1.ConfigMap, error) {
	name := path
	var data []byte
	var err error
	if path == "-" {
		name = "stdin"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read -f %s: %w", name, err)
	}
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", name, err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("-f %s: not YAML or JSON: %w", name, err)
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("-f %s holds %d objects: plan takes one ConfigMap", name, len(docs))
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(docs[0], &tm); err != nil {
		return nil, fmt.Errorf("-f %s: %w", name, err)
	}
	if tm.Kind != "ConfigMap" || tm.APIVersion != "v1" {
		return nil, fmt.Errorf("-f %s is a %s (apiVersion %q), not a ConfigMap: plan takes one of the ConfigMaps install-cni reads (calico-config, canal-config, cni-config, kubernetes-services-endpoint)",
			name, cmpOr(tm.Kind, "document without a kind"), tm.APIVersion)
	}
	if err := cniconf.CheckYAMLKeys(docs[0]); err != nil {
		return nil, fmt.Errorf("-f %s: not a valid ConfigMap: %w", name, err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(docs[0], &cm); err != nil {
		return nil, fmt.Errorf("-f %s: not a valid ConfigMap: %w", name, err)
	}
	if cm.Name == "" {
		return nil, fmt.Errorf("-f %s: the ConfigMap has no metadata.name", name)
	}
	if v, ok := cm.Annotations[rollout.Annotation]; ok && v != "immediate" && v != "waves" && v != "paused" {
		return nil, fmt.Errorf("-f %s: annotation %s is %q: must be immediate, waves or paused", name, rollout.Annotation, v)
	}
	return &cm, nil
}

// serviceEnv completes env with the kubernetes Service's address where env
// lacks it, as the kubelet gives it to install-cni: plan runs from a laptop,
// not from a pod. A Service that cannot be read leaves env as it is, and a
// render that needs the address says so.
func serviceEnv(ctx context.Context, client kubernetes.Interface, env func(string) (string, bool)) func(string) (string, bool) {
	if _, ok := env("KUBERNETES_SERVICE_HOST"); ok {
		return env
	}
	ctx, cancel := context.WithTimeout(ctx, inputs.APITimeout)
	defer cancel()
	svc, err := client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) == 0 {
		return env
	}
	port := svc.Spec.Ports[0].Port
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" {
			port = p.Port
		}
	}
	host := svc.Spec.ClusterIP
	return func(key string) (string, bool) {
		switch key {
		case "KUBERNETES_SERVICE_HOST":
			return host, true
		case "KUBERNETES_SERVICE_PORT":
			return strconv.Itoa(int(port)), true
		}
		return env(key)
	}
}

// printPlan is plan's text: the ConfigMap and its rollout, then one block
// per group of nodes.
func printPlan(w io.Writer, res *plan.Result) {
	mode := "not set (the agents' --rollout decides: waves unless their DaemonSet says immediate)"
	if res.Rollout != "" {
		mode = res.Rollout + " (annotation " + rollout.Annotation + ")"
	}
	_, _ = fmt.Fprintf(w, "ConfigMap %s; rollout: %s\n", res.ConfigMap, mode)
	counts := map[string]int{}
	for _, g := range res.Groups {
		counts[g.Outcome] += g.Nodes.Count
	}
	_, _ = fmt.Fprintf(w, "%s: %d would change, %d unchanged, %d do not read it, %d in error\n",
		plural(res.Nodes, "node"), counts[plan.Change], counts[plan.NoChange], counts[plan.NotRead], counts[plan.Failed])
	for _, g := range res.Groups {
		names := strings.Join(g.Nodes.Names, ", ")
		if more := g.Nodes.Count - len(g.Nodes.Names); more > 0 {
			names += fmt.Sprintf(" and %d more", more)
		}
		head := g.Outcome
		if g.DaemonSet != "" {
			head += fmt.Sprintf(": %s install, DaemonSet %s", g.Install, g.DaemonSet)
		}
		_, _ = fmt.Fprintf(w, "\n%s; %s (%s)\n", head, plural(g.Nodes.Count, "node"), names)
		for _, f := range g.Files {
			_, _ = fmt.Fprintf(w, "  %s: %s\n", f.Path, strings.Join(f.Changed, ", "))
		}
		switch {
		case g.Loadable == nil:
		case *g.Loadable:
			_, _ = fmt.Fprintln(w, "  libcni would load the new config")
		default:
			_, _ = fmt.Fprintf(w, "  NOT LOADABLE: %s\n", g.LoadError)
		}
		if g.Error != "" {
			_, _ = fmt.Fprintf(w, "  %s\n", g.Error)
		}
		if g.Diff != "" {
			printDiff(w, g.Diff)
		}
	}
}

func cmpOr(s, alt string) string {
	if s != "" {
		return s
	}
	return alt
}
