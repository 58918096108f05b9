package inputs

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
	"github.com/calico-cni-sync/calico-cni-sync/sync/token"
)

// Config is what the flags say about the inputs. The agent, --once, drift
// and render pass the same Config to Select.
type Config struct {
	// Source is --source: auto, daemonset or configmap.
	Source string
	// ConfigMapNamed: a flag only source configmap reads was given, so
	// auto means configmap.
	ConfigMapNamed bool
	// DaemonSet is --calico-daemonset, NAMESPACE/NAME; "" looks for the
	// candidates.
	DaemonSet string
	// Namespace, ConfigMap and ConfigMapKey name calico-config's template.
	Namespace, ConfigMap, ConfigMapKey string
	// TemplateFile is --cni-network-config-file.
	TemplateFile string
	// ManifestFile and ConfigMapFile replace the API as the inputs.
	ManifestFile, ConfigMapFile string
	NodeName                    string
	// TokenSource is --token-source: auto, secret, tokenrequest or file;
	// TokenFile is the file source's, TokenSecret pins a Secret, TokenTTL
	// is what the TokenRequest source asks for.
	TokenSource, TokenFile, TokenSecret string
	TokenTTL                            time.Duration
	// Env is the agent's own environment; nil is os.LookupEnv.
	Env func(string) (string, bool)
	// Client reads the cluster; nil offline. REST, when set, is what the
	// API server's verdict on a token is asked through.
	Client kubernetes.Interface
	REST   *rest.Config
	// Watch, when set (the agent), caches the inputs in informers and
	// triggers a pass when they change; nil reads them with direct
	// requests at each pass.
	Watch *Watch
	// Recheck is how long a cached answer is kept: whether a
	// ServiceAccount exists, and, under --source=auto, that no calico-node
	// DaemonSet exists yet.
	Recheck time.Duration
}

// Sources are where a pass reads its inputs and token. Each is asked at
// every pass, so a source that is not there yet (the API server is away,
// calico-node's DaemonSet is not created yet) fails that pass, and a later
// pass finds it.
type Sources struct {
	// Install gives what install-cni would get.
	Install InstallSource
	// Fresh, when set, gives the same read straight from the API server
	// (the agent, whose Install reads caches).
	Fresh InstallSource
	Token token.Source
	// Check asks the API server whether it accepts a token; nil offline.
	Check func(ctx context.Context, token string) *bool
}

// Select decides, for every command alike, where the inputs and the token
// come from. It makes no request: --source=auto is decided at each pass,
// next to the read of the DaemonSet it depends on.
func Select(c Config) (Sources, error) {
	env := c.Env
	if env == nil {
		env = os.LookupEnv
	}
	s := Sources{Token: c.tokenSource()}
	if c.REST != nil {
		cfg := c.REST
		s.Check = func(ctx context.Context, tok string) *bool { return TokenAccepted(ctx, cfg, tok) }
	}
	var accounts installcni.Lookup
	if c.Client != nil {
		accounts = APICluster{Client: c.Client}
	}
	configMap := func(cm ConfigMapSource, file string, accounts installcni.Lookup) InstallSource {
		return InstallFromConfigMap(cm, c.ConfigMapKey, c.TemplateFile, env, accounts, SourceInfo{Kind: SourceConfigMap, File: file})
	}
	switch {
	case c.ManifestFile != "":
		data, err := os.ReadFile(c.ManifestFile)
		if err != nil {
			return Sources{}, fmt.Errorf("read --manifest-file: %w", err)
		}
		m, err := installcni.ParseManifest(data)
		if err != nil {
			return Sources{}, fmt.Errorf("--manifest-file %s: %w", c.ManifestFile, err)
		}
		s.Install = InstallFromDaemonSet(ManifestCluster{Manifest: m}, c.DaemonSet, c.NodeName, env, c.ManifestFile, c.TemplateFile)
		return s, nil
	case c.ConfigMapFile != "":
		s.Install = configMap(ConfigMapFromFile(c.ConfigMapFile), c.ConfigMapFile, accounts)
		return s, nil
	case c.Client == nil:
		// The template alone (--cni-network-config-file): the MTU and
		// etcd endpoints come from the environment.
		s.Install = configMap(EmptyConfigMap, c.TemplateFile, nil)
		return s, nil
	}
	direct := APICluster{Client: c.Client}
	var cluster Cluster = direct
	cm := ConfigMapFromAPI(c.Client, c.Namespace, c.ConfigMap)
	// Given a template file, the agent reads the rest of the inputs with a
	// request at each pass; its watch serves the token.
	watched := c.Watch != nil && c.TemplateFile == ""
	if watched {
		cluster = newWatchedCluster(c.Client, c.NodeName, c.daemonSets(), c.Recheck, c.Watch.Trigger, c.Watch.start)
		cm = c.Watch.watchedConfigMap(c.Namespace, c.ConfigMap)
		accounts = newCachedAccounts(direct, c.Recheck)
	}
	daemonSet := InstallFromDaemonSet(cluster, c.DaemonSet, c.NodeName, env, "", c.TemplateFile)
	fromConfigMap := configMap(cm, "", accounts)
	freshDaemonSet := InstallFromDaemonSet(direct, c.DaemonSet, c.NodeName, env, "", c.TemplateFile)
	freshConfigMap := configMap(ConfigMapFromAPI(c.Client, c.Namespace, c.ConfigMap), "", direct)
	switch {
	case c.Source == SourceDaemonSet:
		s.Install, s.Fresh = daemonSet, freshDaemonSet
	case c.Source == SourceConfigMap || c.ConfigMapNamed:
		s.Install, s.Fresh = fromConfigMap, freshConfigMap
	default:
		s.Install = (&auto{cluster: cluster, named: c.DaemonSet, recheck: c.Recheck}).install(daemonSet, fromConfigMap)
		s.Fresh = (&auto{cluster: direct, named: c.DaemonSet}).install(freshDaemonSet, freshConfigMap)
	}
	if !watched {
		s.Fresh = nil // direct reads are fresh already
	}
	return s, nil
}

// auto is --source=auto: daemonset when a candidate DaemonSet exists (or
// the one named), else configmap. A read the API server refuses is an
// error of the pass, never a fallback. That no DaemonSet exists is kept
// for most of recheck, so a ConfigMap install does not ask at every pass;
// a DaemonSet created later is found within about recheck.
type auto struct {
	cluster Cluster
	named   string
	recheck time.Duration

	mu        sync.Mutex
	noneUntil time.Time
}

func (a *auto) install(daemonSet, configMap InstallSource) InstallSource {
	return func(ctx context.Context) (*Install, error) {
		a.mu.Lock()
		none := time.Now().Before(a.noneUntil)
		a.mu.Unlock()
		if none {
			return configMap(ctx)
		}
		all, err := existingDaemonSets(ctx, a.cluster, a.named)
		if err != nil {
			return nil, fmt.Errorf("--source=auto: %w", err)
		}
		if len(all) > 0 {
			return daemonSet(ctx)
		}
		if a.recheck > 0 {
			a.mu.Lock()
			a.noneUntil = time.Now().Add(a.recheck - a.recheck/10)
			a.mu.Unlock()
		}
		return configMap(ctx)
	}
}

// daemonSets are the DaemonSets discovery may read: the one named, else the
// candidates. A malformed name is reported by the read.
func (c Config) daemonSets() []types.NamespacedName {
	if ns, name, ok := strings.Cut(c.DaemonSet, "/"); ok {
		return []types.NamespacedName{{Namespace: ns, Name: name}}
	}
	return installcni.Candidates()
}

// tokenSource is --token-source: the token Secret is watched by the agent
// and read with a request otherwise.
func (c Config) tokenSource() token.Source {
	secrets := func() token.Source {
		if c.Watch != nil {
			return &watchedSecrets{watch: c.Watch, pinned: c.TokenSecret}
		}
		return SecretTokenFromAPI(c.Client, c.TokenSecret)
	}
	switch c.TokenSource {
	case token.SourceFile:
		return TokenFromFile(c.TokenFile)
	case token.SourceSecret:
		return secrets()
	case token.SourceTokenRequest:
		return NewTokenRequester(c.Client, c.TokenTTL, nil)
	default:
		return token.Auto{Secret: secrets(), Request: NewTokenRequester(c.Client, c.TokenTTL, nil)}
	}
}
