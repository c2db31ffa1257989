package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

var (
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	pvcGVR = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	cmGVR  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

// The contracts only real Tekton shows: what its cluster resolver accepts,
// the messages of its failures, its cancellation and timeouts, the
// workspace it makes from a claim template.
func TestTektonContracts(t *testing.T) {
	e := setup(t)
	ctrl := e.startController("controller")
	wait := 60 * time.Second
	ctx := context.Background()

	t.Run("a request without kind runs a Pipeline: the controller sends kind=pipeline", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "no-kind", refParams: map[string]string{"name": "sign-release"},
			params: map[string]string{"component": "cli"}})
		obj := e.waitRequest("tenant-a", "no-kind", "success", wait, hasCondition("True", "Succeeded"), ctrl)
		results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
		if results["signature"] != "signed:cli" {
			t.Errorf("results: %v", results)
		}
		_ = ir
	})

	t.Run("a request that asks the cluster resolver for a Task is refused", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "task-kind", refParams: map[string]string{
			"name": "sign-release", "kind": "task", "namespace": controllerNS}})
		obj := e.waitRequest("tenant-a", "task-kind", "refusal", wait, finished, ctrl)
		st, _, msg := condition(obj)
		if st != "False" {
			t.Fatalf("a request for kind=task ended %s: %q", st, msg)
		}
		mustContain(t, "refusal message", msg, "kind")
		if n := e.prSeen.count(string(ir.GetUID())); n != 0 {
			t.Errorf("a refused request got %d PipelineRuns", n)
		}
	})

	t.Run("a Pipeline that does not exist fails with Tekton's own message", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "missing", refParams: clusterRef("does-not-exist")})
		obj := e.waitRequest("tenant-a", "missing", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, `pipelines.tekton.dev "does-not-exist" not found`)
	})

	t.Run("a step that exits 1 fails the request naming the failing TaskRun", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "step-fails", refParams: clusterRef("always-fails")})
		obj := e.waitRequest("tenant-a", "step-fails", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "-work")
		mustContain(t, "failure message", msg, `"step-work" exited with code 1`)
	})

	t.Run("the resolver's blocked-namespaces refuse the Pipeline with the resolver's message", func(t *testing.T) {
		e.t = t
		setBlocked := func(v string) {
			patch := []byte(fmt.Sprintf(`{"data":{"blocked-namespaces":%q}}`, v))
			if _, err := e.internalC.Resource(cmGVR).Namespace("tekton-pipelines-resolvers").Patch(ctx,
				"cluster-resolver-config", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		setBlocked(controllerNS)
		defer setBlocked("")
		time.Sleep(2 * time.Second) // the resolvers watch their ConfigMap
		e.create(request{ns: "tenant-a", name: "blocked", refParams: clusterRef("sign-release")})
		obj := e.waitRequest("tenant-a", "blocked", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "blocked")
		mustContain(t, "failure message", msg, controllerNS)
	})

	t.Run("deleting a running request ends its PipelineRun Cancelled and its Pods go", func(t *testing.T) {
		e.t = t
		w, err := e.internalC.Resource(prGVR).Namespace(controllerNS).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		ir := e.create(request{ns: "tenant-a", name: "cancel-me", refParams: clusterRef("never-ends")})
		uid := string(ir.GetUID())
		e.waitRequest("tenant-a", "cancel-me", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		var podName string
		deadline := time.Now().Add(wait)
		for podName == "" {
			pods, err := e.internalC.Resource(podGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if phase, _, _ := unstructured.NestedString(p.Object, "status", "phase"); phase == "Running" &&
					strings.HasPrefix(p.GetName(), e.pipelineRuns(uid)[0].GetName()) {
					podName = p.GetName()
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the request's Pod never ran")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(ctx, "cancel-me", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", "cancel-me", "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
		cancelled := false
		timeout := time.After(wait)
		for !cancelled {
			select {
			case ev := <-w.ResultChan():
				obj, ok := ev.Object.(*unstructured.Unstructured)
				if !ok || ev.Type == watch.Error || obj.GetLabels()[uidLabel] != uid {
					continue
				}
				st, reason, _ := condition(obj)
				cancelled = st == "False" && reason == "Cancelled"
			case <-timeout:
				t.Fatal("the PipelineRun was never Cancelled before it went")
			}
		}
		e.waitNoPipelineRun(uid, wait)
		deadline = time.Now().Add(wait)
		for {
			_, err := e.internalC.Resource(podGVR).Namespace(controllerNS).Get(ctx, podName, metav1.GetOptions{})
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Pod %s of the cancelled run is still there", podName)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("the workspace from the config's volumeClaimTemplate reaches the Pod", func(t *testing.T) {
		e.t = t
		e.apply(e.internal, fmt.Sprintf(`apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: uses-workspace, namespace: %s}
spec:
  workspaces: [{name: workspace}]
  tasks:
  - name: work
    workspaces: [{name: source, workspace: workspace}]
    taskSpec:
      workspaces: [{name: source}]
      steps:
      - name: work
        image: registry.invalid/busybox
        script: "true"
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
`, controllerNS))
		ir := e.create(request{ns: "tenant-a", name: "with-workspace", refParams: clusterRef("uses-workspace")})
		e.waitRequest("tenant-a", "with-workspace", "success", wait, hasCondition("True", "Succeeded"), ctrl)
		// Nothing garbage-collects on the bed: the claim Tekton made stays.
		pvcs, err := e.internalC.Resource(pvcGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range pvcs.Items {
			size, _, _ := unstructured.NestedString(p.Object, "spec", "resources", "requests", "storage")
			owners := p.GetOwnerReferences()
			if size == "2Gi" && len(owners) == 1 && strings.HasPrefix(owners[0].Name, "ir-with-workspace-") {
				found = true
			}
		}
		if !found {
			t.Errorf("no 2Gi claim owned by the request's PipelineRun among %d claims", len(pvcs.Items))
		}
		_ = ir
	})
}
