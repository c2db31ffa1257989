package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The switch from the existing Go controller with requests in flight: the
// objects below are shaped exactly as that controller writes them
// (controllers/internalrequest/adapter.go, tekton/pipeline_run.go and
// api/v1alpha1 of konflux-ci/internal-services), then this controller is
// started in its place and must take every request to its right end.

const (
	nameLabel      = "internal-services.appstudio.openshift.io/name"
	namespaceLabel = "internal-services.appstudio.openshift.io/namespace"
)

// legacyState is what the previous controller had written on a request
// when it stopped.
type legacyState int

const (
	legacyNone      legacyState = iota // finalizer only: it crashed right after creating the run
	legacyRunning                      // MarkRunning written, status.pipelineRun not yet
	legacyTracked                      // MarkRunning and status.pipelineRun written
	legacySucceeded                    // finished, but the run was not deleted yet
	legacyRejected                     // rejected; no run
)

// legacyRequest creates a request on remote as a client would.
func (e *env) legacyRequest(name, pipeline string) *unstructured.Unstructured {
	e.t.Helper()
	return e.create(request{ns: "tenant-a", name: name, refParams: map[string]string{"name": pipeline},
		params: map[string]string{"component": "web"},
		labels: map[string]string{"internal-services.appstudio.openshift.io/pipelinerun-uid": "0f1e2d3c"}})
}

// legacyStatus writes the previous controller's finalizer and status on
// the request ir, whose PipelineRun (if any) is named pr.
func (e *env) legacyStatus(ir *unstructured.Unstructured, state legacyState, pr string) *unstructured.Unstructured {
	e.t.Helper()
	ctx := context.Background()
	name := ir.GetName()
	if state != legacyRejected {
		ir.SetFinalizers([]string{finalizer})
		var err error
		if ir, err = e.remoteC.Resource(irGVR).Namespace("tenant-a").Update(ctx, ir, metav1.UpdateOptions{}); err != nil {
			e.t.Fatalf("adding the finalizer to %s: %v", name, err)
		}
	}
	stamp := time.Now().UTC().Format(time.RFC3339)
	cond := func(status, reason, message string) []interface{} {
		return []interface{}{map[string]interface{}{"type": "Succeeded", "status": status, "reason": reason,
			"message": message, "lastTransitionTime": stamp}}
	}
	switch state {
	case legacyNone:
		return ir
	case legacyRunning:
		ir.Object["status"] = map[string]interface{}{"startTime": stamp, "conditions": cond("False", "Running", "")}
	case legacyTracked:
		ir.Object["status"] = map[string]interface{}{"startTime": stamp, "conditions": cond("False", "Running", ""),
			"pipelineRun": controllerNS + "/" + pr}
	case legacySucceeded:
		ir.Object["status"] = map[string]interface{}{"startTime": stamp, "completionTime": stamp,
			"conditions": cond("True", "Succeeded", ""), "pipelineRun": controllerNS + "/" + pr,
			"results": map[string]interface{}{"signature": "signed:web"}}
	case legacyRejected:
		ir.Object["status"] = map[string]interface{}{"conditions": cond("False", "Rejected",
			"the internal request namespace (tenant-a) is not in the allow list")}
	}
	out, err := e.remoteC.Resource(irGVR).Namespace("tenant-a").UpdateStatus(ctx, ir, metav1.UpdateOptions{})
	if err != nil {
		e.t.Fatalf("writing the status of %s: %v", name, err)
	}
	return out
}

// legacyPipelineRun creates the previous controller's PipelineRun of the
// request name: generateName, its two labels and the type label, the
// operator-sdk owner annotations, and the cluster resolver pointed at the
// namespace named like the request's. Returns its name.
func (e *env) legacyPipelineRun(name, pipeline string) string {
	e.t.Helper()
	pr := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]interface{}{
			"generateName": "internalrequest-",
			"namespace":    controllerNS,
			"labels": map[string]interface{}{
				nameLabel: name, namespaceLabel: "tenant-a", "pipelines.appstudio.openshift.io/type": "release",
			},
			"annotations": map[string]interface{}{
				"operator-sdk/primary-resource":      "tenant-a/" + name,
				"operator-sdk/primary-resource-type": "InternalRequest.appstudio.redhat.com",
			},
		},
		"spec": map[string]interface{}{
			"params": []interface{}{map[string]interface{}{"name": "component", "value": "web"}},
			"pipelineRef": map[string]interface{}{"resolver": "cluster", "params": []interface{}{
				map[string]interface{}{"name": "name", "value": pipeline},
				map[string]interface{}{"name": "namespace", "value": "tenant-a"},
				map[string]interface{}{"name": "kind", "value": "pipeline"},
			}},
			"workspaces": []interface{}{map[string]interface{}{"name": "workspace", "volumeClaimTemplate": map[string]interface{}{
				"spec": map[string]interface{}{"accessModes": []interface{}{"ReadWriteOnce"},
					"resources": map[string]interface{}{"requests": map[string]interface{}{"storage": "1Gi"}}}}}},
		},
	}}
	out, err := e.internalC.Resource(prGVR).Namespace(controllerNS).Create(context.Background(), pr, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("creating the PipelineRun of %s: %v", name, err)
	}
	return out.GetName()
}

// legacyRuns lists the PipelineRuns labelled for the request name.
func (e *env) legacyRuns(name string) []unstructured.Unstructured {
	list, err := e.internalC.Resource(prGVR).Namespace(controllerNS).List(context.Background(), metav1.ListOptions{
		LabelSelector: fmt.Sprintf("%s=%s,%s=tenant-a", nameLabel, name, namespaceLabel)})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// waitRunDone waits until Tekton has finished the PipelineRun.
func (e *env) waitRunDone(name string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pr, err := e.internalC.Resource(prGVR).Namespace(controllerNS).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(pr.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]interface{}); ok && m["type"] == "Succeeded" && m["status"] != "Unknown" {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("PipelineRun %s did not finish", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMigration(t *testing.T) {
	e := setup(t)
	// The previous controller resolves Pipelines in the namespace named like
	// the request's, so that is where this site keeps them.
	e.apply(e.internal, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant-a\n")
	e.pipelineIn("tenant-a", "sign-release", "succeed", "1s", `[{"name":"signature","value":"signed:$(params.component)"}]`)
	e.pipelineIn("tenant-a", "slow-release", "succeed", "15s", `[{"name":"signature","value":"slow:$(params.component)"}]`)
	e.pipelineIn("tenant-a", "always-fails", "fail", "3s", "")
	wait := 60 * time.Second

	type tc struct {
		name, pipeline string
		state          legacyState
		withRun        bool
		runDone        bool // finished by Tekton before the switch
		wantStatus     string
		wantReason     string
		wantSignature  string
	}
	cases := []tc{
		{"tracked-running", "slow-release", legacyTracked, true, false, "True", "Succeeded", "slow:web"},
		{"tracked-done", "sign-release", legacyTracked, true, true, "True", "Succeeded", "signed:web"},
		{"tracked-fails", "always-fails", legacyTracked, true, false, "False", "Failed", ""},
		{"untracked-running", "slow-release", legacyRunning, true, false, "True", "Succeeded", "slow:web"},
		{"untracked-done", "sign-release", legacyRunning, true, true, "True", "Succeeded", "signed:web"},
		{"crash-window", "slow-release", legacyNone, true, false, "True", "Succeeded", "slow:web"},
		{"finished-left-run", "sign-release", legacySucceeded, true, true, "True", "Succeeded", "signed:web"},
		{"rejected", "sign-release", legacyRejected, false, false, "False", "Rejected", ""},
	}
	uids := map[string]string{}
	runs := map[string]string{}
	for _, c := range cases {
		ir := e.legacyRequest(c.name, c.pipeline)
		uids[c.name] = string(ir.GetUID())
		// The old controller creates the run before it writes any status.
		if c.withRun {
			runs[c.name] = e.legacyPipelineRun(c.name, c.pipeline)
		}
		e.legacyStatus(ir, c.state, runs[c.name])
	}
	for _, c := range cases {
		if c.runDone {
			e.waitRunDone(runs[c.name], wait)
		}
	}

	ctrl := e.startController("controller")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			obj := e.waitRequest("tenant-a", c.name, c.wantReason, wait, func(o *unstructured.Unstructured) bool {
				st, r, _ := condition(o)
				return st == c.wantStatus && r == c.wantReason && len(o.GetFinalizers()) == 0
			}, ctrl)
			_, _, msg := condition(obj)
			if c.wantSignature != "" {
				results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
				if results["signature"] != c.wantSignature {
					t.Errorf("results: %v", results)
				}
			}
			if c.wantReason == "Failed" {
				mustContain(t, "failure message", msg, runs[c.name])
				mustContain(t, "failure message", msg, "Tasks Completed: 1 (Failed: 1")
			}
			if c.withRun && c.wantReason != "Rejected" {
				if pr, _, _ := unstructured.NestedString(obj.Object, "status", "pipelineRun"); pr != controllerNS+"/"+runs[c.name] {
					t.Errorf("status.pipelineRun %q, want the adopted %s", pr, runs[c.name])
				}
				if v, _, _ := unstructured.NestedString(obj.Object, "status", "completionTime"); v == "" {
					t.Errorf("no completionTime")
				}
			}
			// Nothing left behind, and never a run of our own beside the adopted one.
			deadline := time.Now().Add(wait)
			for len(e.legacyRuns(c.name)) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the previous controller's PipelineRun of %s was not deleted", c.name)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if n := e.prSeen.count(uids[c.name]); n != 0 {
				t.Errorf("%d PipelineRuns of our own were started beside the adopted one", n)
			}
		})
	}
	e.t = t
	mustContain(t, "controller log", ctrl.log(), "adopting the previous controller's PipelineRun")
	reasons := e.eventReasons("tenant-a", "tracked-running")
	if !contains(reasons, "Adopted") || contains(reasons, "Started") {
		t.Errorf("events of an adopted request: %v", reasons)
	}
	// A request the old controller rejected stays as it wrote it.
	if v, _, _ := unstructured.NestedString(e.get("tenant-a", "rejected").Object, "status", "completionTime"); v != "" {
		t.Errorf("the rejected request was rewritten: completionTime %q", v)
	}

	// New requests resolve in the controller's namespace, where slow-release
	// is not: Tekton cannot find it. With the config's opt-in they resolve
	// where the previous controller looked.
	t.Run("new requests: pinned namespace by default, the request's with the opt-in", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "after-switch", refParams: map[string]string{"name": "slow-release"}})
		e.waitRequest("tenant-a", "after-switch", "failure", wait, hasCondition("False", "Failed"), ctrl)
		e.apply(e.internal, fmt.Sprintf(`apiVersion: appstudio.redhat.com/v1alpha1
kind: InternalServicesConfig
metadata:
  name: config
  namespace: %s
spec:
  allowList: ["tenant-a"]
  clusterResolverNamespace: RequestNamespace
`, controllerNS))
		time.Sleep(500 * time.Millisecond)
		ir := e.create(request{ns: "tenant-a", name: "after-switch-opt-in", refParams: map[string]string{"name": "slow-release"},
			params: map[string]string{"component": "api"}})
		e.waitRequest("tenant-a", "after-switch-opt-in", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		for _, pr := range e.pipelineRuns(string(ir.GetUID())) {
			refParams, _, _ := unstructured.NestedSlice(pr.Object, "spec", "pipelineRef", "params")
			got := map[string]interface{}{}
			for _, p := range refParams {
				m := p.(map[string]interface{})
				got[fmt.Sprint(m["name"])] = m["value"]
			}
			if got["namespace"] != "tenant-a" || got["kind"] != "pipeline" {
				t.Errorf("resolver params with the opt-in: %v", got)
			}
		}
		obj := e.waitRequest("tenant-a", "after-switch-opt-in", "success", wait, hasCondition("True", "Succeeded"), ctrl)
		results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
		if results["signature"] != "slow:api" {
			t.Errorf("results: %v", results)
		}
	})
}
