package bed

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

var pipelineGVR = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}

// The bed's Tekton is the real one: the cluster resolver applies its own
// defaults, results travel from a step's termination message through the
// TaskRun to the PipelineRun, and its processes end with the cluster.
func TestTekton(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := Start(t, "internal")
	began := time.Now()
	if err := c.StartTekton(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Tekton started in %v", time.Since(began).Round(time.Millisecond))
	StartKubeletDriver(t, c, c.Namespace, filepath.Join(t.TempDir(), "kubelet-driver.log"))
	admin := mustDynamic(t, c, "")

	pipeline := mustDecode(t, fmt.Sprintf(`
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: sample, namespace: %s}
spec:
  params: [{name: component, type: string}]
  results:
  - {name: signature, value: $(tasks.work.results.signature)}
  - {name: digests, type: array, value: "$(tasks.work.results.digests[*])"}
  - {name: report, type: object, value: "$(tasks.work.results.report[*])"}
  tasks:
  - name: work
    params: [{name: component, value: $(params.component)}]
    taskSpec:
      params: [{name: component}]
      results:
      - {name: signature}
      - {name: digests, type: array}
      - {name: report, type: object, properties: {component: {type: string}}}
      steps:
      - name: sign
        image: registry.invalid/busybox
        script: "true"
        env:
        - name: BED_STEP_RESULTS
          value: '{"signature":"signed:$(params.component)","digests":["a","b"],"report":{"component":"$(params.component)"}}'
`, c.Namespace))
	if _, err := admin.Resource(pipelineGVR).Namespace(c.Namespace).Create(ctx, pipeline, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	run := func(name string, refParams string) *unstructured.Unstructured {
		t.Helper()
		pr := mustDecode(t, fmt.Sprintf(`
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: %s, namespace: %s}
spec:
  params: [{name: component, value: web}]
  pipelineRef: {resolver: cluster, params: [%s]}
`, name, c.Namespace, refParams))
		if _, err := admin.Resource(pipelineRun).Namespace(c.Namespace).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			got, err := admin.Resource(pipelineRun).Namespace(c.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st, _, _ := succeeded(got); st == "True" || st == "False" {
				return got
			}
			if ctx.Err() != nil {
				t.Fatalf("PipelineRun %s did not finish: %v", name, got.Object["status"])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("a PipelineRun resolved by kind=pipeline succeeds with its results", func(t *testing.T) {
		pr := run("with-kind", fmt.Sprintf("{name: kind, value: pipeline}, {name: name, value: sample}, {name: namespace, value: %s}", c.Namespace))
		if st, reason, msg := succeeded(pr); st != "True" {
			t.Fatalf("condition %s/%s %q", st, reason, msg)
		}
		results, _, _ := unstructured.NestedSlice(pr.Object, "status", "results")
		got := map[string]string{}
		for _, r := range results {
			m := r.(map[string]any)
			got[fmt.Sprint(m["name"])] = fmt.Sprint(m["value"])
		}
		want := map[string]string{"signature": "signed:web", "digests": "[a b]", "report": "map[component:web]"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("result %s = %q, want %q (all: %v)", k, got[k], v, got)
			}
		}
	})

	t.Run("without kind the cluster resolver looks for a Task", func(t *testing.T) {
		pr := run("without-kind", fmt.Sprintf("{name: name, value: sample}, {name: namespace, value: %s}", c.Namespace))
		st, reason, msg := succeeded(pr)
		if st != "False" || reason != "CouldntGetPipeline" || !strings.Contains(msg, `tasks.tekton.dev "sample" not found`) {
			t.Fatalf("condition %s/%s %q, want False/CouldntGetPipeline naming the missing Task", st, reason, msg)
		}
	})

	// Tekton reaches the API server only while it is ready, as through a
	// load balancer with a readiness probe: a restarted one answers 403
	// until its RBAC caches are filled, which would fail a TaskRun for good.
	t.Run("a PipelineRun created right after an API server restart runs", func(t *testing.T) {
		if err := c.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		pr := run("after-restart", fmt.Sprintf("{name: kind, value: pipeline}, {name: name, value: sample}, {name: namespace, value: %s}", c.Namespace))
		if st, reason, msg := succeeded(pr); st != "True" {
			t.Fatalf("condition %s/%s %q", st, reason, msg)
		}
	})

	t.Run("Tekton stops with the cluster", func(t *testing.T) {
		pids := c.PIDs()
		for _, role := range []string{"tekton-controller", "tekton-resolvers"} {
			if pids[role] == 0 {
				t.Fatalf("no %s pid: %v", role, pids)
			}
		}
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
		for role, pid := range pids {
			if !processGone(pid) {
				t.Errorf("%s (pid %d) still runs after destroy", role, pid)
			}
		}
	})
}

func succeeded(obj *unstructured.Unstructured) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Succeeded" {
			return fmt.Sprint(m["status"]), fmt.Sprint(m["reason"]), fmt.Sprint(m["message"])
		}
	}
	return "", "", ""
}

func mustDecode(t *testing.T, yaml string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(yaml), 4096).Decode(&obj.Object); err != nil {
		t.Fatalf("decoding %s: %v", yaml, err)
	}
	return obj
}
