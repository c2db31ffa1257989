package e2e

// What the controller's two identities can do, asked of the real API
// servers with the RBAC that deploy/ ships (the threat model in README.md):
// on the internal cluster it creates PipelineRuns in its own namespace and
// nowhere else, and reads no Secret but the remote kubeconfig; on the remote
// cluster it may update InternalRequests but never create or delete one,
// nor read Secrets.

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestControllerIdentitiesAreConfined(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	internal, err := e.internal.DynamicAs(e.internalKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := e.remote.DynamicAs(e.remoteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	secretGVR := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	configMapGVR := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	pr := func(ns string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
			"metadata": map[string]interface{}{"name": "confined", "namespace": ns},
			"spec":     map[string]interface{}{"pipelineRef": map[string]interface{}{"name": "sign-release"}},
		}}
	}
	e.apply(e.internal, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: elsewhere\n")

	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: want 403 Forbidden, got %v", what, err)
		}
	}

	// Internal: its own namespace works, which makes the refusals meaningful.
	if _, err := internal.Resource(prGVR).Namespace(controllerNS).Create(ctx, pr(controllerNS), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a PipelineRun in %s: %v", controllerNS, err)
	}
	_, err = internal.Resource(prGVR).Namespace("elsewhere").Create(ctx, pr("elsewhere"), metav1.CreateOptions{})
	forbidden("a PipelineRun in another namespace", err)
	cm := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]interface{}{"name": "confined"},
	}}
	_, err = internal.Resource(configMapGVR).Namespace(controllerNS).Create(ctx, cm, metav1.CreateOptions{})
	forbidden("a ConfigMap in its own namespace", err)
	_, err = internal.Resource(secretGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{})
	forbidden("listing Secrets", err)
	_, err = internal.Resource(secretGVR).Namespace(controllerNS).Get(ctx, "some-other-secret", metav1.GetOptions{})
	forbidden("reading another Secret", err)
	_, err = internal.Resource(pipelineGVR).Namespace(controllerNS).Create(ctx, pr(controllerNS), metav1.CreateOptions{})
	forbidden("creating a Pipeline", err)

	// Remote: requests are read and updated, never created or deleted.
	ir := e.create(request{ns: "tenant-a", name: "confined", refParams: clusterRef("sign-release")})
	if _, err := remote.Resource(irGVR).Namespace("tenant-a").Get(ctx, "confined", metav1.GetOptions{}); err != nil {
		t.Fatalf("reading a request as the controller: %v", err)
	}
	fresh := ir.DeepCopy()
	fresh.SetName("forged")
	fresh.SetResourceVersion("")
	fresh.SetUID("")
	_, err = remote.Resource(irGVR).Namespace("tenant-a").Create(ctx, fresh, metav1.CreateOptions{})
	forbidden("creating a request on remote", err)
	err = remote.Resource(irGVR).Namespace("tenant-a").Delete(ctx, "confined", metav1.DeleteOptions{})
	forbidden("deleting a request on remote", err)
	_, err = remote.Resource(secretGVR).Namespace("tenant-a").List(ctx, metav1.ListOptions{})
	forbidden("listing Secrets on remote", err)
	_, err = remote.Resource(configMapGVR).Namespace("tenant-a").Create(ctx, cm, metav1.CreateOptions{})
	forbidden("creating a ConfigMap on remote", err)
}
