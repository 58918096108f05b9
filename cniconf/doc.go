// Package cniconf owns everything calico-cni-sync knows about the files in
// the CNI configuration directory, and nothing about Kubernetes: it renders
// Calico's cni_network_config template exactly as Calico's install-cni does,
// builds the calico-kubeconfig, validates a config the way libcni and the
// container runtimes load it, classifies the file on disk against what should
// be there (InSync, Missing, StaleToken, Outdated, Corrupt, Drifted,
// Shadowed), and writes files atomically with backups and a token-free record
// of what was last written.
//
// It imports no client-go package. Where the inputs come from (a ConfigMap
// informer, a manifest on disk, a token Secret or a projected file) is the
// business of package sync.
//
// Decisions where Calico's install-cni and the product contract are silent:
//
//   - Every file is written with mode 0600, also a conf without a token
//     (install-cni writes those 0644): only root reads them.
//   - Token fields are learned from the template: wherever
//     __SERVICEACCOUNT_TOKEN__ sits, with the text around it in that string.
//   - The record in the state directory describes the last file rendered from
//     the ConfigMap, not a report-policy merge: after the token inside a hand
//     edit is replaced, the edit still differs from the record and stays
//     Drifted, so a later ConfigMap change never overwrites it.
//   - Backups are kept per managed file name: the newest 20 of each. A hand
//     edit is backed up when first seen (an edit that persists is not
//     copied again on every pass), and the backup a run makes is never
//     pruned by that run, whatever the clock says.
//   - The record is versioned (RecordVersion) and kept per CNI directory,
//     so a trial in a scratch directory never reads or changes the node's.
//     A write is recorded before the file is renamed into place (Pending),
//     naming the temporary file the rename puts in place and the file it
//     replaces; the file on disk then says whether the write was done, so
//     no record is written after the rename (where the system does not name
//     files by inode, the write is confirmed by a second record). While that
//     is unknown, a file equal to either is the agent's.
//     Version 1 records (flat in the state directory, one per file name)
//     are adopted by the first run after an upgrade and then replaced.
//   - A Sync takes an flock in the state directory, so a --once and the
//     agent never interleave; under it, temporary files left by killed
//     writers are removed. Before a pass that changes a file, a probe
//     proves the state directory writable; every backup and intended
//     record is made before the first file changes, and a file kept as it
//     is is recorded after.
//   - Whatever is at a managed path is looked at with Lstat and read with
//     O_NOFOLLOW|O_NONBLOCK and a 1 MiB cap: a symlink, FIFO, device or
//     oversized file is Corrupt (replaced; the backup says what it was), a
//     directory is Error (left alone). A modification time in the future is
//     not waited on.
//   - A file holding a token must be mode 0600 and owned by the agent's user;
//     otherwise it is Drifted (path "mode") and closed again under either
//     policy.
//   - A value still holding a placeholder Calico's manifests leave for the
//     operator ("<ETCD_IP>:<ETCD_PORT>") is refused: calico-node could not
//     use it either. An unquoted placeholder whose value is no JSON value
//     (CNI_MTU=auto) is named in the error.
//   - Environment variables are looked up as install-cni does: set to the
//     empty string is the empty string; only unset takes the default.
//   - Plugins other node agents chain onto Calico's conflist (by type:
//     istio-cni and linkerd-cni unless Dir.ChainedTypes says otherwise) are
//     set aside wherever they sit, so they are no hand edit, and a rewrite
//     appends them after the rendered plugins in the order found, which is
//     where their installers put them, so the installers never fight the
//     agent. Changed paths and token paths count the rendered plugins only.
//     The record holds the rendered content alone. A type the template
//     renders itself is Calico's and is compared as usual.
//   - A meta-plugin's config (multus and multus-shim unless Dir.MetaTypes
//     says otherwise: a single config of that type, or a conflist whose
//     first plugin is one) is recognised by type alone and passed over when
//     looking for the config the runtime uses, since multus delegates to the
//     first other config by name. So Calico's is Shadowed only by a config
//     that is not a meta-plugin's (05-bridge.conflist behind 00-multus.conf
//     still shadows it).
//   - A chained plugin's own copy of Calico's list (CopyingTypes: istio-cni
//     with istioOwnedCNIConfig writes 02-istio-cni.conflist, Calico's plugins
//     then its own) is known by its content, not its name. Calico's file
//     stays InSync while the copy's Calico part means the same, and is
//     Shadowed, naming the paths, when the copy lags it. The copy is read,
//     never written; Dir.Rewrites counts how often its writer changes it.
package cniconf
