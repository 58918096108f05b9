package plan

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/inputs"
	"github.com/calico-cni-sync/calico-cni-sync/sync/rollout"
)

// standInToken is rendered in place of the CNI token on both sides. It is
// redacted from everything shown all the same.
const standInToken = "calico-cni-sync-plan-stand-in-token"

// standInCA is the kubeconfig's CA where none is given: a ConfigMap does not
// change the CA either, and the tool's own kubeconfig need not hold the one
// the nodes trust.
var standInCA = []byte("-----BEGIN CERTIFICATE-----\ncalico-cni-sync plan: the same CA on both sides\n-----END CERTIFICATE-----\n")

// Outcomes of a node.
const (
	// Change: the proposed ConfigMap changes the node's files.
	Change = "change"
	// NoChange: the files would stay as they are.
	NoChange = "noChange"
	// NotRead: the node's install-cni does not read the ConfigMap.
	NotRead = "notRead"
	// Failed: the node's files cannot be rendered from the inputs as they
	// are (Error says why); nothing can be said of the change.
	Failed = "error"
)

// Request is what to plan.
type Request struct {
	// Proposed is the ConfigMap as it would be applied.
	Proposed *corev1.ConfigMap
	// Cluster is the cluster as it is.
	Cluster inputs.Cluster
	// DaemonSet is --calico-daemonset; "" looks for the candidates.
	DaemonSet string
	// Nodes are the nodes to render for. A node the DaemonSet has no pod
	// on and would not schedule on is left out.
	Nodes []string
	// AgentEnv is the environment install-cni's own is completed with
	// (the kubernetes Service's address, as the kubelet injects it).
	AgentEnv func(string) (string, bool)
	// NetDir, KubeconfigName, ConfName and CA are rendered as the agent
	// renders them (--cni-net-dir, --cni-kubeconfig-name, --cni-conf-name,
	// --ca-file); no CA is a stand-in.
	NetDir, KubeconfigName, ConfName string
	CA                               []byte
	// Listed bounds the node names kept per group.
	Listed int
}

// Result is what plan prints, -o json as it is.
type Result struct {
	// ConfigMap is the proposed ConfigMap, namespace/name.
	ConfigMap string `json:"configMap"`
	// Rollout is the rollout the ConfigMap's annotation asks (immediate,
	// waves, paused); "" when it has none: the agents' --rollout.
	Rollout string `json:"rollout"`
	// Nodes is how many nodes were rendered.
	Nodes  int     `json:"nodes"`
	Groups []Group `json:"groups"`
}

// Group is the nodes with one outcome.
type Group struct {
	Outcome   string `json:"outcome"`
	Install   string `json:"install,omitempty"`
	DaemonSet string `json:"daemonSet,omitempty"`
	// Files are the files that would change and the paths that change in
	// each, as drift names them.
	Files []FileChange `json:"files"`
	// Loadable says whether a runtime (libcni) would load the proposed
	// config; LoadError why not. Absent when nothing is rendered.
	Loadable  *bool  `json:"loadable,omitempty"`
	LoadError string `json:"loadError,omitempty"`
	Error     string `json:"error,omitempty"`
	Nodes     Nodes  `json:"nodes"`
	// Diff is the change on the first node, tokens redacted.
	Diff string `json:"diff,omitempty"`
}

// FileChange is one file that would change.
type FileChange struct {
	Path    string   `json:"path"`
	Changed []string `json:"changed"`
}

// Nodes counts a group's nodes and names the first few.
type Nodes struct {
	Count int      `json:"count"`
	Names []string `json:"names"`
}

// Plan renders every node's files now and with the proposed ConfigMap, and
// groups the nodes by outcome. The error is for a plan that cannot be made
// at all: no node's install reads the ConfigMap, or no node is left.
func Plan(ctx context.Context, req Request) (*Result, error) {
	res := &Result{ConfigMap: req.Proposed.Namespace + "/" + req.Proposed.Name, Rollout: req.Proposed.Annotations[rollout.Annotation], Groups: []Group{}}
	if req.Proposed.Namespace == "" {
		res.ConfigMap = req.Proposed.Name
	}
	byKey := map[string]int{}
	var readers []string
	for _, node := range req.Nodes {
		g, diff, err := req.node(ctx, node)
		if err != nil {
			return nil, err
		}
		if g == nil {
			continue // the DaemonSet does not run there
		}
		res.Nodes++
		if g.Outcome == NotRead {
			readers = append(readers, g.Error)
		}
		key := g.key()
		i, ok := byKey[key]
		if !ok {
			if diff != nil {
				g.Diff = diff()
			}
			g.Nodes.Names = []string{}
			res.Groups = append(res.Groups, *g)
			i = len(res.Groups) - 1
			byKey[key] = i
		}
		gr := &res.Groups[i]
		gr.Nodes.Count++
		if len(gr.Nodes.Names) < max(req.Listed, 1) {
			gr.Nodes.Names = append(gr.Nodes.Names, node)
		}
	}
	if res.Nodes == 0 {
		return nil, fmt.Errorf("no node to plan for: calico-node's DaemonSet runs on none of the %d nodes given", len(req.Nodes))
	}
	if len(readers) == res.Nodes {
		slices.Sort(readers)
		return nil, fmt.Errorf("ConfigMap %s is not read by install-cni on any node: %s", res.ConfigMap, strings.Join(slices.Compact(readers), "; "))
	}
	slices.SortStableFunc(res.Groups, func(a, b Group) int { return rank(a.Outcome) - rank(b.Outcome) })
	return res, nil
}

func rank(outcome string) int {
	return slices.Index([]string{Failed, Change, NoChange, NotRead}, outcome)
}

// key is what makes two nodes' outcomes the same.
func (g *Group) key() string {
	parts := []string{g.Outcome, g.Install, g.DaemonSet, g.LoadError, g.Error}
	if g.Loadable != nil {
		parts = append(parts, fmt.Sprint(*g.Loadable))
	}
	for _, f := range g.Files {
		parts = append(parts, f.Path+"="+strings.Join(f.Changed, ","))
	}
	return strings.Join(parts, "\x00")
}

// node renders one node's files now and as proposed. A nil group is a node
// the DaemonSet does not run on. The diff is made only for the first node
// of a group: at thousands of nodes, diffing each would be most of the work.
func (req Request) node(ctx context.Context, node string) (*Group, func() string, error) {
	ds, pod, err := inputs.FindDaemonSet(ctx, req.Cluster, req.DaemonSet, node)
	if err != nil {
		return &Group{Outcome: Failed, Error: err.Error()}, nil, nil
	}
	if ds == nil {
		return nil, nil, fmt.Errorf("no calico-node DaemonSet found (looked for %s): plan shows the effect of a ConfigMap on the install-cni of calico-node's DaemonSet; name it with --calico-daemonset", inputs.CandidateList())
	}
	if pod == nil {
		n, err := req.Cluster.Node(ctx, node)
		if err != nil {
			return &Group{Outcome: Failed, Error: err.Error()}, nil, nil
		}
		if n != nil {
			if ok, err := inputs.SchedulesOn(ds, n); err == nil && !ok {
				return nil, nil, nil
			}
		}
	}
	g := &Group{Install: string(inputs.KindOf(ds)), DaemonSet: ds.Namespace + "/" + ds.Name, Files: []FileChange{}}
	now, err := inputs.InstallFromDaemonSet(req.Cluster, req.DaemonSet, node, req.AgentEnv, "", "")(ctx)
	if err != nil {
		g.Outcome, g.Error = Failed, err.Error()
		return g, nil, nil
	}
	proposedCluster := withProposed{Cluster: req.Cluster, cm: req.Proposed}
	next, err := inputs.InstallFromDaemonSet(proposedCluster, req.DaemonSet, node, req.AgentEnv, "", "")(ctx)
	if err != nil {
		// The proposed ConfigMap breaks install-cni's environment (a key
		// a configMapKeyRef needs is gone): the node would not get files.
		g.Outcome, g.Loadable, g.LoadError = Change, new(bool), err.Error()
		return g, nil, nil
	}
	if !reads(next, req.Proposed, ds.Namespace) {
		g.Outcome = NotRead
		g.Error = fmt.Sprintf("%s reads %s", g.DaemonSet, strings.Join(next.Source.ConfigMaps, ", "))
		return g, nil, nil
	}
	was, _, err := req.render(now, node)
	if err != nil {
		g.Outcome, g.Error = Failed, "render the files now: "+err.Error()
		return g, nil, nil
	}
	will, unloadable, err := req.render(next, node)
	loadable := err == nil && unloadable == nil
	g.Loadable = &loadable
	switch {
	case err != nil:
		g.Outcome, g.LoadError = Change, err.Error()
		return g, nil, nil
	case unloadable != nil:
		g.LoadError = unloadable.Error()
	}
	for _, f := range will.Files {
		path := filepath.Join(req.NetDir, f.Name)
		old := fileNamed(was, f.Name)
		if old == nil {
			g.Files = append(g.Files, FileChange{Path: path, Changed: []string{"(new file)"}})
			continue
		}
		changed, err := cniconf.ChangedBetween(old, f)
		if err != nil {
			g.LoadError = cmpOr(g.LoadError, err.Error())
			loadable = false
			changed = []string{"."}
		}
		if len(changed) > 0 {
			g.Files = append(g.Files, FileChange{Path: path, Changed: changed})
		}
	}
	for _, f := range was.Files {
		if fileNamed(will, f.Name) == nil {
			path := filepath.Join(req.NetDir, f.Name)
			g.Files = append(g.Files, FileChange{Path: path, Changed: []string{"(no longer written)"}})
		}
	}
	g.Outcome = NoChange
	if len(g.Files) > 0 || !loadable {
		g.Outcome = Change
	}
	diff := func() string {
		var b strings.Builder
		for _, f := range will.Files {
			var before []byte
			if old := fileNamed(was, f.Name); old != nil {
				before = old.Content
			}
			b.WriteString(cniconf.ProposedDiff(filepath.Join(req.NetDir, f.Name), before, f.Content, standInToken))
		}
		return cniconf.Redact(b.String(), standInToken)
	}
	return g, diff, nil
}

// reads reports whether the install reads the proposed ConfigMap.
func reads(in *inputs.Install, cm *corev1.ConfigMap, dsNamespace string) bool {
	ns := cm.Namespace
	if ns == "" {
		ns = dsNamespace
	}
	return slices.Contains(in.Source.ConfigMaps, ns+"/"+cm.Name)
}

// render builds a node's files from its inputs as the agent does, with the
// stand-in token.
func (req Request) render(in *inputs.Install, node string) (*cniconf.Desired, error, error) {
	confName := req.ConfName
	if confName == "" && in.Env != nil {
		confName, _ = in.Env("CNI_CONF_NAME")
	}
	ca := req.CA
	if len(ca) == 0 {
		ca = standInCA
	}
	d, unloadable, err := cniconf.Preview(&cniconf.Inputs{
		Template: in.Template, Env: in.Env, FromCluster: in.SetByCluster, NodeName: node, NetDir: req.NetDir,
		KubeconfigDir: in.KubeconfigDir, KubeconfigName: req.KubeconfigName, VethMTU: in.VethMTU, EtcdEndpoints: in.EtcdEndpoints,
		Token: standInToken, CA: ca, FileExists: func(string) bool { return false },
	}, confName)
	if err != nil {
		return nil, nil, fmt.Errorf("%s", cniconf.Redact(err.Error(), standInToken))
	}
	return d, unloadable, nil
}

func fileNamed(d *cniconf.Desired, name string) *cniconf.File {
	for _, f := range d.Files {
		if f.Name == name {
			return f
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
