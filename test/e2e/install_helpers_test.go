package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// A Calico install applied to the control plane from one of the fixtures in
// test/testdata/fixtures/installs: the objects Calico's manifests (or the
// tigera operator) create, so that the agent discovers its inputs from the
// very DaemonSet and ConfigMaps a cluster holds. No kubelet and no
// DaemonSet controller run here: a test that needs this node's calico-node
// pod creates it with createNodePod.

// installsPath is a file in the install fixtures.
func installsPath(name string) string {
	return fixturePath(filepath.Join("installs", name))
}

// newInstallEnv is an env for a discovered install: a Node, a node
// directory and an admin kubeconfig, and nothing else in the cluster (no
// calico-config, no token Secret: the fixture brings its own objects). With
// ns "" the env gets a namespace of its own, purged at cleanup; otherwise ns
// is where the fixture's objects live (kube-system, calico-system).
func newInstallEnv(t testing.TB, ns string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	n := seq.Add(1)
	e := &env{t: t, ctx: ctx, client: cp.Client, ns: ns, node: fmt.Sprintf("disc-node-%d", n), dir: t.TempDir()}
	e.net = filepath.Join(e.dir, "net.d")
	must(t, os.MkdirAll(e.net, 0o755))
	e.kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	must(t, cp.WriteKubeconfig(e.kubeconfig, cp.Config))
	_, err := cp.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.node}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() { _ = cp.Client.CoreV1().Nodes().Delete(context.Background(), e.node, metav1.DeleteOptions{}) })
	if e.ns == "" {
		e.ns = fmt.Sprintf("disc-%d", n)
		_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{})
		must(t, err)
		t.Cleanup(func() { purgeNamespace(t, e.ns) })
	}
	e.cniBinding = bindCNIAccounts(t, ctx, e.ns)
	return e
}

// installEdit changes one fixture object before it is applied; false drops
// the object.
type installEdit func(u *unstructured.Unstructured) bool

// intoNamespace moves the fixture's namespaced objects into ns, so that a
// test has a DaemonSet no other test sees (the agent then needs
// --calico-daemonset). Cluster-scoped objects (the Namespace, Calico's
// ClusterRoles and bindings) are dropped: their names are shared by every
// install, and RBAC is proven with the product's own manifests elsewhere.
func intoNamespace(ns string) installEdit {
	return func(u *unstructured.Unstructured) bool {
		switch u.GetKind() {
		case "Namespace", "ClusterRole", "ClusterRoleBinding":
			return false
		}
		u.SetNamespace(ns)
		return true
	}
}

// cniHostPath points the DaemonSet's cni-net-dir hostPath at dir: on a real
// node the agent and install-cni write the same host directory, and the
// agent refuses to write one install-cni does not. Only that volume moves;
// install-cni's CNI_NET_DIR (the path written into the conf) stays.
func cniHostPath(t testing.TB, dir string) installEdit {
	return func(u *unstructured.Unstructured) bool {
		if u.GetKind() != "DaemonSet" {
			return true
		}
		vols, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "volumes")
		must(t, err)
		found := false
		for _, v := range vols {
			vol := v.(map[string]any)
			if vol["name"] == "cni-net-dir" {
				must(t, unstructured.SetNestedField(vol, dir, "hostPath", "path"))
				found = true
			}
		}
		if !found {
			t.Fatalf("DaemonSet %s has no cni-net-dir volume", u.GetName())
		}
		must(t, unstructured.SetNestedSlice(u.Object, vols, "spec", "template", "spec", "volumes"))
		return true
	}
}

// applyInstall applies a fixture, edited, with kubectl apply --server-side
// as an operator would, and deletes every object at cleanup (finalizers
// removed: the operator's objects carry tigera.io/cni-protector, and no
// operator runs here to release them). A Namespace the fixture creates is
// purged with its content, since no namespace controller runs either.
func (e *env) applyInstall(fixture string, edits ...installEdit) []*unstructured.Unstructured {
	e.t.Helper()
	objs := e.readInstall(fixture, edits...)
	var doc bytes.Buffer
	for _, u := range objs {
		y, err := yaml.Marshal(u.Object)
		must(e.t, err)
		doc.WriteString("---\n")
		doc.Write(y)
		if u.GetKind() == "Namespace" {
			if _, err := cp.Client.CoreV1().Namespaces().Get(e.ctx, u.GetName(), metav1.GetOptions{}); apierrors.IsNotFound(err) {
				e.t.Cleanup(func() { purgeNamespace(e.t, u.GetName()) })
			}
		}
	}
	// An object another test deleted but could not remove (an operator
	// finalizer, and no operator) would take the apply and stay
	// Terminating: finish its deletion first.
	deleteObjects(e.t, objs, true)
	e.t.Cleanup(func() { deleteObjects(e.t, objs, false) })
	path := filepath.Join(e.dir, "install-"+fixture)
	must(e.t, os.WriteFile(path, doc.Bytes(), 0o600))
	if out, err := kubectl(e.ctx, e.kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager", "e2e-discovery", "-f", path); err != nil {
		e.t.Fatalf("kubectl apply --server-side %s: %v\n%s", fixture, err, out)
	}
	return objs
}

// readInstall parses a fixture's documents and applies the edits.
func (e *env) readInstall(fixture string, edits ...installEdit) []*unstructured.Unstructured {
	e.t.Helper()
	f, err := os.Open(installsPath(fixture))
	must(e.t, err)
	defer func() { _ = f.Close() }()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var objs []*unstructured.Unstructured
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		must(e.t, err)
		u := &unstructured.Unstructured{}
		must(e.t, yaml.Unmarshal(raw, &u.Object))
		if len(u.Object) == 0 {
			continue // a document of comments only
		}
		keep := true
		for _, edit := range edits {
			keep = keep && edit(u)
		}
		if keep {
			objs = append(objs, u)
		}
	}
	return objs
}

// deleteObjects removes applied objects (but Namespaces, see purgeNamespace)
// and waits until they are gone, so the next test's discovery cannot find
// this one's DaemonSet. With onlyTerminating it only finishes the deletion
// of those already being deleted.
func deleteObjects(t testing.TB, objs []*unstructured.Unstructured, onlyTerminating bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Client.Discovery()))
	noFinalizers := []byte(`{"metadata":{"finalizers":null}}`)
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		if u.GetKind() == "Namespace" {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("cleanup %s %s: %v", gvk.Kind, u.GetName(), err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if onlyTerminating {
			cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil || cur.GetDeletionTimestamp() == nil {
				continue
			}
		}
		if _, err := ri.Patch(ctx, u.GetName(), types.MergePatchType, noFinalizers, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: remove finalizers of %s %s: %v", gvk.Kind, u.GetName(), err)
		}
		if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete %s %s: %v", gvk.Kind, u.GetName(), err)
		}
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("cleanup: %s %s still there", gvk.Kind, u.GetName())
		}
	}
}

// purgeNamespace deletes a namespace a test created, with everything in
// it, and waits until it is gone. The control plane runs no namespace
// controller, so this does its work: the namespace is set Terminating first
// (nothing can be created in it any more, and the serviceaccount controller
// stops recreating "default"), its content deleted, then it is finalized.
// Left Terminating, calico-system could not be created again by a later
// test.
func purgeNamespace(t testing.TB, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := cp.Client
	if err := c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); apierrors.IsNotFound(err) {
		return
	}
	zero := int64(0)
	all := metav1.ListOptions{}
	var errs []error
	errs = append(errs,
		c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, all),
		c.AppsV1().DaemonSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, all),
		c.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, all),
		c.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, all),
		c.CoreV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, all))
	if sas, err := c.CoreV1().ServiceAccounts(ns).List(ctx, all); err == nil {
		for _, sa := range sas.Items {
			_, err := c.CoreV1().ServiceAccounts(ns).Patch(ctx, sa.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			errs = append(errs, ignoreNotFound(err), ignoreNotFound(c.CoreV1().ServiceAccounts(ns).Delete(ctx, sa.Name, metav1.DeleteOptions{})))
		}
	}
	if cur, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		cur.Spec.Finalizers = nil
		_, err = c.CoreV1().Namespaces().Finalize(ctx, cur, metav1.UpdateOptions{})
		errs = append(errs, ignoreNotFound(err))
	}
	errs = append(errs, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}))
	if err := errors.Join(errs...); err != nil {
		t.Errorf("cleanup: purge namespace %s: %v", ns, err)
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// daemonSet reads the DaemonSet as the API server stored it (defaulted,
// with its UID).
func (e *env) daemonSet(ns, name string) *appsv1.DaemonSet {
	e.t.Helper()
	ds, err := e.client.AppsV1().DaemonSets(ns).Get(e.ctx, name, metav1.GetOptions{})
	must(e.t, err)
	return ds
}

// createNodePod creates this node's pod of ds as the DaemonSet controller
// would: controlled by ds (its UID), the template's labels, spec.nodeName
// this node, the template's spec; edit changes the spec first, to play a pod
// made from another revision of the template. It is force-deleted at
// cleanup: no kubelet will ever confirm a graceful deletion.
func (e *env) createNodePod(ds *appsv1.DaemonSet, edit func(*corev1.PodSpec)) *corev1.Pod {
	e.t.Helper()
	spec := ds.Spec.Template.Spec.DeepCopy()
	spec.NodeName = e.node
	if edit != nil {
		edit(spec)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ds.Name + "-", Namespace: ds.Namespace,
			Labels: maps.Clone(ds.Spec.Template.Labels), Annotations: maps.Clone(ds.Spec.Template.Annotations),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))},
		},
		Spec: *spec,
	}
	created, err := e.client.CoreV1().Pods(ds.Namespace).Create(e.ctx, pod, metav1.CreateOptions{})
	must(e.t, err)
	e.t.Cleanup(func() { forceDeletePod(created) })
	return created
}

func forceDeletePod(p *corev1.Pod) {
	zero := int64(0)
	_ = cp.Client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

// setInstallCNIEnv sets (or replaces) one variable of the install-cni
// container in a pod spec.
func setInstallCNIEnv(t testing.TB, spec *corev1.PodSpec, v corev1.EnvVar) {
	t.Helper()
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if list[i].Name != "install-cni" {
				continue
			}
			for j := range list[i].Env {
				if list[i].Env[j].Name == v.Name {
					list[i].Env[j] = v
					return
				}
			}
			list[i].Env = append(list[i].Env, v)
			return
		}
	}
	t.Fatal("no install-cni container")
}

// installCNIEnv is the value of one literal variable of install-cni.
func installCNIEnv(t testing.TB, spec *corev1.PodSpec, name string) string {
	t.Helper()
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			if c.Name != "install-cni" {
				continue
			}
			for _, v := range c.Env {
				if v.Name == name && v.ValueFrom == nil {
					return v.Value
				}
			}
		}
	}
	t.Fatalf("install-cni has no literal %s", name)
	return ""
}
