package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
)

// The plugins whose credentials the probe knows by name.
const (
	PluginCalico      = "calico"
	PluginMultus      = "multus"
	PluginWhereabouts = "whereabouts"
	PluginIstio       = "istio-cni"
	PluginLinkerd     = "linkerd-cni"
)

// whereaboutsFlatFile is where Whereabouts' installer writes its own
// configuration, which names its kubeconfig: the IPAM sections that use
// Whereabouts usually live in NetworkAttachmentDefinitions, not on disk.
const whereaboutsFlatFile = "whereabouts.d/whereabouts.conf"

// DefaultPod is the pod the probe GETs for the plugins that read the pod
// being networked. It need not exist (see PodGet).
const (
	DefaultPodNamespace = "default"
	DefaultPodName      = "calico-cni-sync-probe"
)

// Dir is the CNI configuration directory, as the agent sees it and as the
// host (and so every plugin) names it.
type Dir struct {
	// Path is where the agent reads the directory.
	Path string
	// HostPath is the directory's path on the host, which the configs'
	// pointers use (/etc/cni/net.d); empty: Path.
	HostPath string
	// PodNamespace and PodName name the pod a pod-reading plugin's probe
	// GETs (empty: DefaultPodNamespace, DefaultPodName).
	PodNamespace, PodName string
}

// Target is one credential a config in the directory points to.
type Target struct {
	// Plugin is the plugin that uses it (its type).
	Plugin string
	// Path is the file that holds the token, as the host names it: a
	// kubeconfig, or a v2.x Calico conf.
	Path string
	// Conf is the config that points to it.
	Conf string
	// Request is what the probe makes with it.
	Request Request

	load func() (Credential, error)
}

// Credential reads the credential from disk now.
func (t Target) Credential() (Credential, error) { return t.load() }

// Result is the verdict on one credential, as reported (JSON
// credentials[]). It never holds the token.
type Result struct {
	Path   string `json:"path"`
	Plugin string `json:"plugin"`
	// Verdict is empty when the credential could not be read (the file
	// is missing, odd or does not parse); Message says why.
	Verdict Verdict `json:"verdict"`
	Message string  `json:"message"`
	// Subject is the token's user name by its claims.
	Subject string `json:"subject,omitempty"`
	// Refused is what the API server refused, for forbidden.
	Refused *Access `json:"-"`
}

// local is where the agent reads a path the host names.
func (d Dir) local(hostPath string) string {
	host := d.HostPath
	if host == "" {
		host = d.Path
	}
	host = filepath.Clean(host)
	clean := filepath.Clean(hostPath)
	if rel, err := filepath.Rel(host, clean); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return filepath.Join(d.Path, rel)
	}
	if !filepath.IsAbs(hostPath) {
		return filepath.Join(d.Path, hostPath)
	}
	return clean
}

// host is how the host names a file of the directory.
func (d Dir) host(name string) string {
	if d.HostPath == "" {
		return filepath.Join(d.Path, name)
	}
	return filepath.Join(d.HostPath, name)
}

// read reads a file the host names, for a probe: a regular file within
// cniconf.MaxFileBytes, opened without blocking on a FIFO. It never writes.
func (d Dir) read(hostPath string) ([]byte, error) {
	path := d.local(hostPath)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", hostPath, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", hostPath, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", hostPath)
	}
	data, err := io.ReadAll(io.LimitReader(f, cniconf.MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", hostPath, err)
	}
	if len(data) > cniconf.MaxFileBytes {
		return nil, fmt.Errorf("read %s: larger than %d bytes", hostPath, cniconf.MaxFileBytes)
	}
	return data, nil
}

// Discover finds every credential the directory's configs point to: the
// configs libcni would load (*.conf, *.conflist, *.json), the plugins of a
// list, Multus's delegates, and Whereabouts' own configuration file. A
// config that does not parse points to nothing (it is reported elsewhere).
func (d Dir) Discover() ([]Target, error) {
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Path, err)
	}
	var found []Target
	seen := map[[2]string]bool{}
	add := func(t Target) {
		k := [2]string{t.Plugin, filepath.Clean(t.Path)}
		if !seen[k] {
			seen[k] = true
			found = append(found, t)
		}
	}
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		conf := d.host(e.Name())
		data, err := d.read(conf)
		if err != nil {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			continue
		}
		d.walk(obj, conf, add)
	}
	if flat := d.host(whereaboutsFlatFile); fileExists(d.local(flat)) {
		if data, err := d.read(flat); err == nil {
			var obj map[string]json.RawMessage
			if json.Unmarshal(data, &obj) == nil {
				if kc := kubeconfigOf(obj["kubernetes"]); kc != "" {
					add(d.kubeconfigTarget(PluginWhereabouts, kc, flat, WhereaboutsNeeds))
				}
			}
		}
	}
	slices.SortStableFunc(found, func(a, b Target) int { return strings.Compare(a.Plugin+"\x00"+a.Path, b.Plugin+"\x00"+b.Path) })
	return found, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// walk finds the credentials one config object points to.
func (d Dir) walk(obj map[string]json.RawMessage, conf string, add func(Target)) {
	var plugins, delegates []map[string]json.RawMessage
	_ = json.Unmarshal(obj["plugins"], &plugins)
	_ = json.Unmarshal(obj["delegates"], &delegates)
	for _, p := range append(plugins, delegates...) {
		d.walk(p, conf, add)
	}
	var typ string
	_ = json.Unmarshal(obj["type"], &typ)
	pod := PodGet(cmpOr(d.PodNamespace, DefaultPodNamespace), cmpOr(d.PodName, DefaultPodName))
	switch typ {
	case "":
	case PluginCalico:
		raw, _ := json.Marshal(obj)
		var e calicoEntry
		if json.Unmarshal(raw, &e) != nil {
			return
		}
		load := func() (Credential, error) { return FromCalicoEntry(raw, d.read, d.local) }
		switch {
		case e.legacy():
			// Calico v2.x: the token is the conf's own, and the plugin's
			// policy driver GETs the pod first.
			add(Target{Plugin: PluginCalico, Path: conf, Conf: conf, Request: pod, load: load})
		case e.Kubernetes.Kubeconfig != "":
			add(Target{Plugin: PluginCalico, Path: e.Kubernetes.Kubeconfig, Conf: conf, Request: CalicoFirst, load: load})
		}
	case PluginMultus:
		var kc string
		_ = json.Unmarshal(obj["kubeconfig"], &kc)
		if kc != "" {
			add(d.kubeconfigTarget(PluginMultus, kc, conf, pod))
		}
	case PluginIstio, PluginLinkerd:
		if kc := kubeconfigOf(obj["kubernetes"]); kc != "" {
			add(d.kubeconfigTarget(typ, kc, conf, pod))
		}
	default:
		// A plugin the probe does not know: whether its token
		// authenticates, asked by review.
		if kc := kubeconfigOf(obj["kubernetes"]); kc != "" {
			add(d.kubeconfigTarget(typ, kc, conf, Request{}))
		}
	}
	var ipam map[string]json.RawMessage
	if json.Unmarshal(obj["ipam"], &ipam) == nil {
		var ipamType string
		_ = json.Unmarshal(ipam["type"], &ipamType)
		if ipamType == PluginWhereabouts {
			if kc := kubeconfigOf(ipam["kubernetes"]); kc != "" {
				add(d.kubeconfigTarget(PluginWhereabouts, kc, conf, WhereaboutsNeeds))
			}
		}
	}
}

// kubeconfigOf reads {"kubeconfig": "..."}.
func kubeconfigOf(raw json.RawMessage) string {
	var k struct {
		Kubeconfig string `json:"kubeconfig"`
	}
	_ = json.Unmarshal(raw, &k)
	return k.Kubeconfig
}

func (d Dir) kubeconfigTarget(plugin, kubeconfig, conf string, req Request) Target {
	return Target{Plugin: plugin, Path: kubeconfig, Conf: conf, Request: req, load: func() (Credential, error) {
		data, err := d.read(kubeconfig)
		if err != nil {
			return Credential{}, err
		}
		cred, err := FromKubeconfig(data)
		if err != nil {
			return Credential{}, fmt.Errorf("%s: %w", kubeconfig, err)
		}
		return cred, nil
	}}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ProbeAll discovers the directory's credentials and probes each, one
// after the other. A credential that cannot be read has no verdict (empty)
// and a message saying why; so has a directory that cannot be read.
func (d Dir) ProbeAll(ctx context.Context, p Prober) ([]Result, error) {
	targets, err := d.Discover()
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(targets))
	for _, t := range targets {
		r := Result{Path: t.Path, Plugin: t.Plugin}
		cred, err := t.Credential()
		if err != nil {
			r.Message = err.Error()
			if errors.Is(err, os.ErrNotExist) {
				r.Message = fmt.Sprintf("%s names %s, which does not exist", t.Conf, t.Path)
			}
			out = append(out, r)
			continue
		}
		o := p.Probe(ctx, cred, t.Request)
		r.Verdict, r.Message, r.Subject, r.Refused = o.Verdict, o.Message, o.Subject, o.Refused
		if o.Verdict == Forbidden {
			r.Message += "; " + Hint(t.Plugin, o.Subject)
		}
		r.Message = cniconf.Redact(r.Message, cred.Token)
		out = append(out, r)
	}
	return out, nil
}
