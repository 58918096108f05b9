package harness

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// ServedAPIs gives the v2.6 manifest the API versions a current API server
// serves, the minimal change the fixtures' installs/README.md names: a
// DaemonSet in apps/v1 (it already has a selector), RBAC in v1. Its
// ClusterRole also loses the namespace it never had any use for. It is an
// edit of a fixture's object that keeps every object (it returns true).
func ServedAPIs(u *unstructured.Unstructured) bool {
	switch u.GetAPIVersion() {
	case "extensions/v1beta1":
		u.SetAPIVersion("apps/v1")
	case "rbac.authorization.k8s.io/v1beta1":
		u.SetAPIVersion("rbac.authorization.k8s.io/v1")
	}
	if u.GetKind() == "ClusterRole" || u.GetKind() == "ClusterRoleBinding" {
		u.SetNamespace("")
	}
	return true
}
