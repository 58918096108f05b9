package stuck

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ControllerLookup returns the controller reference of the object ref names
// (in namespace), nil when that object has no controller or is gone.
type ControllerLookup func(namespace string, ref metav1.OwnerReference) (*metav1.OwnerReference, error)

// TopOwner names the controller that recreates the pod when it is deleted,
// as Kind/name: the Deployment of a pod whose ReplicaSet a Deployment
// controls, else the pod's own controller (a Job stays Job/x even under a
// CronJob: the Job is what makes the replacement pod); "" for a pod no
// controller owns. Only a ReplicaSet is looked up.
func TopOwner(pod metav1.Object, lookup ControllerLookup) (string, error) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return "", nil
	}
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	if ref.Kind == "ReplicaSet" && gv.Group == "apps" {
		parent, err := lookup(pod.GetNamespace(), *ref)
		if err != nil {
			return "", fmt.Errorf("owner of pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), err)
		}
		if parent != nil && parent.Kind == "Deployment" {
			return "Deployment/" + parent.Name, nil
		}
	}
	return ref.Kind + "/" + ref.Name, nil
}
