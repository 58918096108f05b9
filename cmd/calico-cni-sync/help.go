package main

import "strings"

// The help of each command: what it is for, how the README's recipes call
// it, its exit codes and the environment it reads. Kept apart from the
// wiring in commands.go, as prose.

// Annotations a command's help prints after its flags (see usageExtras).
const (
	annExitCodes = "exitCodes"
	annEnv       = "environment"
)

// usageExtras prints a command's exit codes and environment after its flags.
const usageExtras = `{{with index .Annotations "exitCodes"}}

Exit codes:
{{. | trimTrailingWhitespaces}}{{end}}{{with index .Annotations "environment"}}

Environment:
{{. | trimTrailingWhitespaces}}{{end}}`

// withExtras puts usageExtras into cobra's usage template before its last
// line, the pointer to the subcommands' help, or at the end.
func withExtras(tmpl string) string {
	const last = `{{if .HasAvailableSubCommands}}

Use "`
	if i := strings.LastIndex(tmpl, last); i >= 0 {
		return tmpl[:i] + usageExtras + tmpl[i:]
	}
	return strings.TrimRight(tmpl, "\n") + usageExtras + "\n"
}

const rootLong = `calico-cni-sync keeps Calico's CNI config (10-calico.conflist or 10-calico.conf) and
calico-kubeconfig on this node equal to what Calico's install-cni would write now, from
calico-node's DaemonSet, the ConfigMaps it refers to and a working CNI token, and reports a hand
edit instead of losing it.

Without a command it is the node agent: it watches its inputs, the token and the CNI directory
and reconciles until SIGTERM. A ConfigMap change reaches the node in its wave (--rollout=waves,
the default: the canaries at once, the last wave 40 minutes after the edit); the ConfigMap
annotation calico-cni-sync.projectcalico.org/rollout=immediate pushes an urgent one to every node
at once. With --once it reconciles this node once and exits: the repair of a broken node, online
with a kubeconfig, or offline (no API server) with --manifest-file (or --configmap-file,
--cni-network-config-file), --token-file and --ca-file; --once applies a change whatever its wave.`

const rootExample = `  # What --once would change on node-1, as a diff; writes nothing
  calico-cni-sync --once --dry-run --node-name node-1

  # Put node-1's files right
  calico-cni-sync --once --node-name node-1

  # The same offline, when the node cannot reach the API server: bring the inputs along.
  # The CNI account is calico-cni-plugin on Calico v3.26+ (calico-node before, canal on canal);
  # operator installs: namespace calico-system, ConfigMap cni-config.
  #   kubectl -n kube-system get daemonset/calico-node configmap/calico-config -o yaml > calico.yaml
  #   kubectl -n kube-system create token calico-cni-plugin --duration=24h > token
  #   kubectl -n kube-system get configmap kube-root-ca.crt -o jsonpath='{.data.ca\.crt}' > ca.crt
  KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 \
    calico-cni-sync --once --manifest-file calico.yaml --token-file token --ca-file ca.crt --node-name node-1`

const rootExitCodes = `  agent   0 after SIGTERM or SIGINT; 2 when it cannot start
  --once  0 the files are current (written or already so); 1 a hand edit was left in place
          (--on-drift=report) or, with --dry-run, something would change; 2 an error
`

// nodeEnv is what the commands that render a node's files read from the
// environment: the flags' defaults and what install-cni reads.
const nodeEnv = `  KUBECONFIG                          the tool's own kubeconfig, as for kubectl
  KUBERNETES_NODE_NAME, NODE_NAME     this node (--node-name)
  CNI_NET_DIR, CNI_CONF_NAME          --cni-net-dir, --cni-conf-name
  KUBERNETES_SERVICE_PROTOCOL, KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                                      the API address written into the files
  SKIP_TLS_VERIFY                     true: the kubeconfig skips TLS verification
  LOG_LEVEL, LOG_FILE_PATH, LOG_FILE_MAX_SIZE, LOG_FILE_MAX_AGE, LOG_FILE_MAX_COUNT,
  DATASTORE_TYPE, CNI_MTU, ETCD_ENDPOINTS, ETCD_DISCOVERY_SRV, CALICO_API_GROUP, REQUIRE_MTU_FILE
                                      read as install-cni reads them
`

const driftLong = `drift compares this node's files with what install-cni would write now and prints each file's
state (InSync, Missing, StaleToken, Outdated, Drifted, Corrupt, Shadowed or Error), the JSON
paths that differ and a diff, tokens shown as <token sha256:...>. It writes nothing. It reads
the same inputs as --once, online or offline.

With --suggest, each Drifted file also says where the edit must be made to survive a calico-node
restart: the ConfigMap key or DaemonSet variable install-cni fills the value from, the template
with the edit merged in, or the tigera operator's Installation field, each as a kubectl command
to paste; or why no input can hold it.`

const driftExample = `  # What is wrong on node-1
  calico-cni-sync drift --node-name node-1

  # The same as a JSON document
  calico-cni-sync drift --node-name node-1 -o json

  # Where a hand edit must be made to last
  calico-cni-sync drift --node-name node-1 --suggest

  # Offline, with no API server
  calico-cni-sync drift --manifest-file calico.yaml --token-file token --ca-file ca.crt --node-name node-1`

const driftExitCodes = `  0  every file InSync
  1  any other state, or the API server rejects the token the files hold
  2  an error
`

const renderLong = `render prints the files install-cni would write now, each after a "# <path>" line, with the
token shown as <token sha256:...> unless --show-token. It writes nothing and reads the same
inputs as drift. The text output ends each file with a newline; -o json gives each file's exact
content: {"files": [{"path", "content"}]}.`

const renderExample = `  # The files for node-1
  calico-cni-sync render --node-name node-1

  # Offline, from the ConfigMap manifest and a token file
  calico-cni-sync render --configmap-file calico-config.yaml --token-file token --ca-file ca.crt --node-name node-1`

const renderExitCodes = `  0  printed
  2  an error: the files cannot be rendered from the inputs
`

const reportLong = `report lists every node's state from its CalicoCNIConfigDrift Node condition, problems first.
A node without the condition is Unknown; a node whose agent's Lease is missing or older than twice
the resync period is Stale (its agent is gone, so its condition may be out of date).

With --stuck it lists instead the pods a stale or rejected CNI token left stuck: pods not Running
that mount a Secret that no longer exists (as the kubelet's FailedMount events say, and, where
listing Secrets is granted, their names through the metadata-only API: no Secret data is
fetched), and pods in ContainerCreating, or stuck Terminating, whose latest sandbox event carries
the CNI's Unauthorized. Each comes with its owner (Deployment/x for a ReplicaSet's pod) and its fix,
with the kubelet's events and the node's condition as evidence. --fix deletes the stuck pods a
controller owns (it recreates them); it asks first on a terminal, deletes without asking with
--yes, and otherwise only says what it would do. A bare pod is never deleted.

With --rollout it shows the staged rollout of ConfigMap changes, as each agent publishes it in
the annotation calico-cni-sync.projectcalico.org/rollout-state of its Lease: per revision, newest
first, how many nodes applied it, wait for their wave, are paused, halted or rolled back, with
the nodes that did not apply it (the reason of a halted or rolled-back node is the gate's
evidence), then the nodes whose place is not known (no Lease, no state, a Stale Lease). Text
lists at most 10 nodes per phase and says how many more; -o json lists every node:
{"newest", "nodes", "revisions": [{"revision", "firstSeen", "nodes": {"applied", "waiting",
"paused", "halted", "rolledBack"}, "waiting": [{"node", "wave", "since", "reason"}], "paused",
"halted", "rolledBack"}], "noState": [{"node", "why", "message", "last"}]}.`

const reportExample = `  calico-cni-sync report
  calico-cni-sync report -o json

  # The pods left stuck, and the fix for each
  calico-cni-sync report --stuck

  # Delete the stuck pods a controller owns, without asking
  calico-cni-sync report --stuck --fix --yes

  # Where the rollout of a ConfigMap change stands, per revision and per node
  calico-cni-sync report --rollout`

const reportExitCodes = `  0  every node InSync (--stuck: no pod stuck; --rollout: nothing rolls out, or every node
     applied the newest revision)
  1  any node not (--stuck: a pod stuck, after --fix too; --rollout: a node waits, is paused,
     halted, rolled back, on an older revision or has no state)
  2  an error
`

const cleanupLong = `cleanup removes what the agent leaves in the cluster once it is uninstalled: the Lease it
renews (calico-cni-sync-<node>, in the agent's namespace) and its CalicoCNIConfigDrift Node
condition, for one node (--node-name) or for every node (--all). Run it with kubectl's
credentials, after kubectl delete -k: it refuses while an agent pod is still on a node it would
clean, since that agent would put both back.

It leaves the CNI files (10-calico.conflist, calico-kubeconfig) in place: they are the nodes'
working configuration, which calico-node's install-cni rewrites at its next start. It never
touches a node's disk; /var/lib/calico-cni-sync (the record and backups) stays on each node until
you remove it there.`

const cleanupExample = `  # After kubectl delete -k manifests/: every node
  calico-cni-sync cleanup --all

  # One node, in another kubeconfig context
  calico-cni-sync cleanup --node-name node-1 --context prod`

const cleanupExitCodes = `  0  removed, or nothing left to remove
  2  an error: no --node-name or --all, an agent pod still on the node, a request refused
`

const planLong = `plan shows what applying a ConfigMap would change in every node's CNI files, before it is
applied: a cluster-wide kubectl diff for the files install-cni writes. -f names the ConfigMap
manifest as kubectl apply -f takes it ("-" reads stdin), one of the ConfigMaps install-cni reads:
calico-config, canal-config, the operator's calico-system/cni-config, kubernetes-services-endpoint.

For each node calico-node's DaemonSet runs on (among those -l selects), the files are rendered
from the inputs as they are and again with the proposed ConfigMap in its namesake's place, and
compared. Nodes are grouped by outcome: the install and its DaemonSet, the files and JSON paths
that would change (as drift names them), whether libcni would load the new config, the nodes
(how many, and the first 10), and the diff on the first of them. The ConfigMap's annotation
calico-cni-sync.projectcalico.org/rollout (immediate, waves, paused) is shown: it chooses how
the agents roll the change out. No token is read: both renders carry the same stand-in, shown
redacted, and so is the CA. Offline, --manifest-file stands for the cluster and --node-name for
the node.

-o json: {"configMap", "rollout", "nodes", "groups": [{"outcome" (change, noChange, notRead,
error), "install", "daemonSet", "files": [{"path", "changed"}], "loadable", "loadError", "error",
"nodes": {"count", "names"}, "diff"}]}.`

const planExample = `  # Before kubectl apply -f calico-config.yaml: what it would change on the nodes
  calico-cni-sync plan -f calico-config.yaml

  # The same, from a pipe
  kubectl -n kube-system get configmap calico-config -o yaml | sed 's/veth_mtu: "0"/veth_mtu: "1400"/' |
    calico-cni-sync plan -f -

  # Offline: the install as a manifest, for one node
  KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 \
    calico-cni-sync plan -f calico-config.yaml --manifest-file calico.yaml --node-name node-1`

const planExitCodes = `  0  nothing would change on any node
  1  some node's files would change (or the new config would not load)
  2  an error: the file is not one ConfigMap, install-cni reads it on no node, the cluster cannot be read
`
