// Package probe judges a CNI credential as its plugin uses it: it reads the
// credential from the file on disk (server, CA and token, nothing else),
// makes the request the plugin makes first, and gives a verdict: ok,
// expired (by the token's claims on the node's clock, with no request),
// rejected (401), forbidden (403, naming the verb and resource refused),
// untrusted (the CA on disk does not verify the server) or unreachable (no
// answer; the caller keeps the last verdict it had).
//
// It owns the probe and the discovery of the credentials the CNI
// directory's configs point to. It reads those files and never writes
// them, nor anything else; it does not decide what a verdict leads to
// (that is the reconcile pass's business), report it, or schedule probes.
// It must not import sync/inputs, sync/reconcile, sync/status, sync/agent,
// sync/stuck or cmd: it is a leaf beside sync/token, whose claims reader it
// uses, and cniconf, whose kubeconfig parser it uses.
//
// # The plugins covered, and how each was learned
//
// Each plugin's credential, where its installer puts it, and the request
// the plugin makes first, were read in the plugin's own code:
//
//   - Calico (v3.x): the plugin entry's kubernetes.kubeconfig
//     (calico-kubeconfig, written by install-cni). cni-plugin's cmdAdd
//     calls ClusterInformation().Get("default") first, and its error is
//     "error getting ClusterInformation"; libcalico-go's Kubernetes backend
//     serves it from crd.projectcalico.org/v1 clusterinformations (its
//     clusterinfo.go and restClient). libcalico-go maps both 401 and 403
//     to "connection is unauthorized" (backend/k8s/resources/errors.go).
//     Calico of 2026 may serve its resources from projectcalico.org/v3
//     CRDs instead, a choice libcalico-go makes by discovery; the probe
//     asks crd.projectcalico.org/v1, which every Calico v3 install's CNI
//     ClusterRole grants. A 404 on clusterinformations/default means the
//     credential was authorized (the API server authorizes before it
//     looks up the object): the verdict is ok, and the message says the
//     plugin will fail for the missing object, which no token fixes.
//   - Calico v2.x: the conf's policy.k8s_api_root and policy.k8s_auth_token
//     (and k8s_certificate_authority, k8s_client_certificate,
//     k8s_client_key), over the kubeconfig the conf names, merged as the
//     plugin's newK8sClient merges them; its policy driver GETs the pod
//     first. The Path of such a credential is the conf itself.
//   - Multus (thin plugin): the conf's top-level kubeconfig
//     (multus.d/multus.kubeconfig, written by its entrypoint); CmdAdd
//     builds its client from it and GETs the pod first (multus.go getPod).
//     The thick plugin's shim has no kubeconfig on the node.
//   - istio-cni before 1.24: the plugin entry's kubernetes.kubeconfig
//     (ZZZ-istio-cni-kubeconfig); the plugin GETs the pod first
//     (cni/pkg/plugin/kubernetes.go getK8sPodInfo). Since 1.24 (istio
//     commit d42deafd "stop writing kubeconfig to shared CNI netdir") the
//     plugin reads <cni_agent_run_dir>/istio-cni-kubeconfig
//     (/var/run/istio-cni by default, newK8sClient), which no config
//     names by that key and the agent does not mount: not discovered, so
//     not covered.
//   - linkerd-cni: the plugin entry's kubernetes.kubeconfig
//     (ZZZ-linkerd-cni-kubeconfig, written by its install-cni.sh); cmdAdd
//     GETs the pod first.
//   - Whereabouts: an IPAM section's kubernetes.kubeconfig, or the
//     kubeconfig named by its own whereabouts.d/whereabouts.conf
//     (whereabouts.d/whereabouts.kubeconfig, written by its install-cni.sh).
//     Its first request is not pinned down here, so the probe asks who the
//     token is (a SelfSubjectReview) and whether it may get and update
//     ippools, create overlappingrangeipreservations and create leases:
//     what its installer's ClusterRole grants for an allocation.
//   - Any other plugin entry with a kubernetes.kubeconfig: a
//     SelfSubjectReview only (does the token authenticate).
//
// For the plugins that read the pod, the probe has no sandbox: it GETs a
// pod that need not exist (default/calico-cni-sync-probe unless the caller
// names one), and a 404 is ok for the same reason as above.
//
// The client is built from the credential alone: no in-cluster
// configuration and no credential of the agent's; the file's
// insecure-skip-tls-verify is honoured as the plugin honours it; the
// environment's proxy settings apply as they do to the plugin; one probe is
// bounded by a short timeout (DefaultTimeout). A 5xx, a 429 or any answer
// that says nothing of the credential is unreachable. A credential whose
// kubeconfig names its CA by file, or authenticates by client certificate,
// is read without them (cniconf's parser reads data only; no covered
// installer writes either).
//
// # How the agent should use it
//
// A probe costs one request (Whereabouts' up to five). calico-node now mints
// a new token at every kubelet rotation, so the agent must not probe at
// every pass: it probes a token once when it first appears (keyed by the
// token's digest, as token.VerdictCache keys the API server's verdicts),
// then once per check period, and, with --probe-on-sandbox-failure, at once
// after the kubelet's FailedCreatePodSandBox event for a pod on its node
// (sync/sandbox; at most once per 30 s); an
// unreachable verdict keeps the last one and is retried sooner. A legacy
// Secret token's first rejected is asked once more a moment later before
// it is believed, as token.VerdictCache does: the API server rejects such
// a token for the moments before its cache has the Secret.
//
// What a verdict leads to, for Calico's own credential:
//
//   - expired, rejected, or ok with a Subject that is not the CNI account:
//     a rewrite with a fresh token, under the policy that allows it (the
//     condition's reason is TokenRejected when none can be written);
//   - untrusted: a rewrite of the CA only when the CA the agent would
//     write (the token Secret's ca.crt, --ca-file, or the agent's own API
//     CA) verifies the file's server, checked first by Prober.Verifies;
//     otherwise reported, and nothing is written;
//   - forbidden: never a rewrite, since no token fixes RBAC. The condition's
//     reason is CNIForbidden, its message names the refused access
//     (Outcome.Refused) and the binding to check (Hint); a Warning event
//     says the same, and a metric counts credentials by plugin and verdict,
//     so report --stuck can name RBAC as the cause of stuck pods;
//   - unreachable: nothing changes.
//
// Other plugins' credentials are reported (drift, -o json credentials[],
// report, metrics) and never written.
package probe
