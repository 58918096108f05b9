package inputs

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/calico-cni-sync/calico-cni-sync/cniconf"
	"github.com/calico-cni-sync/calico-cni-sync/sync/installcni"
)

// Kind is how Calico was installed. It is decided once, where the inputs
// are read (KindOf), and says where a lasting change of the CNI config is
// made and which conf name its install-cni may write.
type Kind string

// Install kinds.
const (
	// KindSeedConfigMap: the template is calico-config's (source
	// configmap, or a ConfigMap or template file).
	KindSeedConfigMap Kind = "configmap"
	// KindManifest: calico.yaml or the Helm chart, kube-system/calico-node.
	KindManifest Kind = "manifest"
	// KindOperator: the tigera operator renders the DaemonSet and
	// cni-config; a lasting change is made in its Installation resource.
	KindOperator Kind = "operator"
	// KindCanal: kube-system/canal, whose install-cni writes
	// 10-canal.conflist.
	KindCanal Kind = "canal"
)

// KindOf is the install kind of calico-node's DaemonSet: operator when it
// lives in calico-system or an Installation owns it; canal for a DaemonSet
// named canal; else manifest.
func KindOf(ds *appsv1.DaemonSet) Kind {
	for _, o := range ds.OwnerReferences {
		if o.Kind == "Installation" {
			return KindOperator
		}
	}
	switch {
	case ds.Namespace == "calico-system":
		return KindOperator
	case ds.Name == "canal":
		return KindCanal
	}
	return KindManifest
}

// Operator reports whether the tigera operator renders the install: a
// lasting change then goes into its Installation resource, not a ConfigMap.
func (k Kind) Operator() bool { return k == KindOperator }

// restartWarning is what every drift message must say.
const restartWarning = "direct edits are overwritten from the ConfigMap when calico-node restarts"

// operatorRestartWarning says it for an operator install, where the lasting
// change goes into the Installation resource.
const operatorRestartWarning = "direct edits are overwritten when calico-node restarts; make a lasting change in the operator's Installation resource (kubectl edit installation default): the operator rewrites cni-config"

// RestartWarning is what a drift message says of a hand edit under this
// kind.
func (k Kind) RestartWarning() string {
	if k.Operator() {
		return operatorRestartWarning
	}
	return restartWarning
}

// LastingChangeNote is the line drift prints under a Drifted node when the
// kind keeps its lasting changes somewhere a ConfigMap user would not look;
// "" otherwise.
func (k Kind) LastingChangeNote() string {
	if k.Operator() {
		return "This is a tigera operator install: a lasting change is made in the Installation resource (kubectl edit installation default); the operator rewrites cni-config."
	}
	return ""
}

// ConfNames are the conf names any install kind's install-cni may write:
// the files the agent watches for whatever kind a pass finds.
func ConfNames() []string {
	return []string{cniconf.DefaultConfListName, cniconf.DefaultConfName, "10-canal.conflist"}
}

// CandidateList names the DaemonSets looked for when none is named, in
// order, for messages and help.
func CandidateList() string {
	cands := installcni.Candidates()
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.String()
	}
	return strings.Join(names, ", ")
}
