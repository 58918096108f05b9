package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// The agent judges the CNI token by Calico's plugin's own first request (a
// GET of clusterinformations/default) with the server, CA and token of
// calico-kubeconfig. On a real cluster Calico's manifests and operator
// grant the CNI account that request (the ClusterRole calico-cni-plugin)
// and calico-node creates the object. ServeCalicoCNI and BindCNIAccounts
// give a test cluster the same, so an agent run as it ships finds its
// plugin's credential ok.

// CNIRole is the ClusterRole ServeCalicoCNI creates: the rules of Calico's
// calico-cni-plugin (v3.32 manifest), under a name no install fixture
// applies or deletes.
const CNIRole = "e2e-calico-cni-plugin"

var (
	crds               = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	clusterInformation = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "clusterinformations"}
)

// ServeCalicoCNI serves Calico's ClusterInformation (the CRD and the
// default object, test/realnode/testdata) and creates CNIRole from
// Calico's manifest (test/testdata/fixtures/installs/manifest-v3.32.yaml).
// Paths are relative to a package directory under test/.
func ServeCalicoCNI(ctx context.Context, cfg *rest.Config, client kubernetes.Interface) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, obj := range []struct {
		file string
		gvr  schema.GroupVersionResource
	}{{"clusterinformation.yaml", crds}, {"clusterinformation-default.yaml", clusterInformation}} {
		docs, err := readObjects(filepath.Join("..", "realnode", "testdata", obj.file))
		if err != nil {
			return err
		}
		// The CRD is accepted before its resource is served: the object
		// is retried until it is taken.
		var last error
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, last = dyn.Resource(obj.gvr).Create(ctx, docs[0], metav1.CreateOptions{})
			return last == nil || apierrors.IsAlreadyExists(last), nil
		})
		if err != nil {
			return fmt.Errorf("create %s: %w", obj.file, errors.Join(err, last))
		}
	}
	objs, err := readObjects(filepath.Join("..", "testdata", "fixtures", "installs", "manifest-v3.32.yaml"))
	if err != nil {
		return err
	}
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" || u.GetName() != "calico-cni-plugin" {
			continue
		}
		role := &rbacv1.ClusterRole{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, role); err != nil {
			return err
		}
		role.ObjectMeta = metav1.ObjectMeta{Name: CNIRole}
		_, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	return errors.New("manifest-v3.32.yaml has no ClusterRole calico-cni-plugin")
}

// BindCNIAccounts binds CNIRole to calico-node and calico-cni-plugin of ns,
// as Calico's install binds its CNI account, under name; delete the
// binding to take the grant away.
func BindCNIAccounts(ctx context.Context, client kubernetes.Interface, name, ns string) error {
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: CNIRole},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "calico-node"},
			{Kind: "ServiceAccount", Namespace: ns, Name: "calico-cni-plugin"}}}, metav1.CreateOptions{})
	return err
}

// readObjects parses a file's YAML documents.
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no object", path)
	}
	return out, nil
}
