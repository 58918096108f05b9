// Package installcni works out what Calico's install-cni would get if
// calico-node restarted now. From calico-node's (or canal's) DaemonSet and
// this node's pod of it (or, with no pod yet, the pod template) it takes the
// install-cni container and resolves its environment as the kubelet would;
// from the same pod spec it takes the CNI service account, whether
// calico-node refreshes the CNI token itself, and the host directory
// install-cni writes into. It also reads a manifest (Calico's calico.yaml,
// kubectl get -o yaml|json output) into those objects for offline use.
//
// It does no I/O: ConfigMaps and ServiceAccounts come through Lookup, which
// the caller backs with the API, informers or a Manifest. Finding the
// DaemonSet and this node's pod, watching them, the precedence of flags over
// this environment, the token and the rendering belong to package sync and
// package cniconf.
//
// Decisions where the product contract is silent:
//
//   - The kubelet's rules are followed where they surprise: an optional
//     configMapKeyRef whose ConfigMap or key is missing leaves the variable
//     as an earlier entry or envFrom set it; a value is expanded only against
//     variables defined before it and the kubelet's service variables; a
//     variable with neither value nor source is set to "".
//   - Of the variables the kubelet injects, only KUBERNETES_SERVICE_HOST and
//     KUBERNETES_SERVICE_PORT (the ones install-cni reads) are taken from the
//     agent's environment; a $(KUBERNETES_PORT) reference stays as written.
//   - fieldRef spec.nodeName is Request.NodeName, else the pod's node; an
//     unknown node name is an error, never "". An empty serviceAccountName
//     reads as the deprecated serviceAccount, else "default", as the API
//     server sets a pod's.
//   - install-cni is the container of that name, init containers first; else
//     the first container whose env lists CNI_NETWORK_CONFIG. An unset
//     CNI_NETWORK_CONFIG is no error here: Template is "" and the caller,
//     which may have a template from a flag, reports it.
//   - calico-node is the regular container of that name; none means
//     ManageCNI false. Only CALICO_MANAGE_CNI and CALICO_CNI_SERVICE_ACCOUNT
//     are resolved in it, evaluating just the entries they can depend on: a
//     Secret or status.podIP behind another of its variables is no error, and
//     no other ConfigMap is read. An envFrom Secret is an error in
//     install-cni, and in calico-node only when env does not set the variable.
//   - ManageCNI follows calico-node's own test (CALICO_MANAGE_CNI != "false"),
//     so it is true for Calico v2.x, which has no token watcher: the caller
//     tells them apart by the token in the template.
//   - Every install-cni release writes to /host/etc/cni/net.d whatever its
//     CNI_NET_DIR (which only fills __KUBECONFIG_FILEPATH__), so the host
//     directory is that mount's (the deepest mount holding it, with its
//     subPath or subPathExpr). No such mount, or a volume that is not a
//     hostPath, is an error.
//   - ConfigMaps looked up but absent (optional references, such as
//     kubernetes-services-endpoint) are listed apart, so that the caller can
//     watch for their creation.
//   - Manifests: extensions/v1beta1 and apps/v1beta2 DaemonSets read as
//     apps/v1; an object with no namespace is in "default"; the same object
//     twice is an error; a List (or typed list) is read one level deep; kinds
//     other than DaemonSet, ConfigMap and ServiceAccount are skipped.
//
// It is pure: it must not import client-go or any other package of this
// module; the objects it resolves are read by sync/inputs.
package installcni
