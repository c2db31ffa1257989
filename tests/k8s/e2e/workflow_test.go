package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestWorkflow(t *testing.T) {
	e := setup(t)
	ctrl := e.startController("controller")
	wait := 60 * time.Second

	t.Run("success copies string, array and object results", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "sign-1", refParams: clusterRef("sign-release"),
			params: map[string]string{"component": "web"}, labels: map[string]string{"team": "release"}})
		uid := string(ir.GetUID())
		e.waitRequest("tenant-a", "sign-1", "Running", wait, func(o *unstructured.Unstructured) bool {
			st, r, _ := condition(o)
			return (st == "Unknown" && r == "Running") || st == "True"
		}, ctrl)
		obj := e.waitRequest("tenant-a", "sign-1", "success", wait, hasCondition("True", "Succeeded"), ctrl)
		results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
		if results["signature"] != "signed:web" {
			t.Errorf("string result: got %q", results["signature"])
		}
		var digests []string
		if err := json.Unmarshal([]byte(results["digests"]), &digests); err != nil || len(digests) != 2 || digests[1] != "sha256:bbb" {
			t.Errorf("array result not JSON-encoded: %q (%v)", results["digests"], err)
		}
		var report map[string]string
		if err := json.Unmarshal([]byte(results["report"]), &report); err != nil || report["component"] != "web" || report["verdict"] != "ok" {
			t.Errorf("object result not JSON-encoded: %q (%v)", results["report"], err)
		}
		for _, f := range []string{"startTime", "completionTime", "pipelineRun"} {
			if v, _, _ := unstructured.NestedString(obj.Object, "status", f); v == "" {
				t.Errorf("status.%s is not set", f)
			}
		}
		pr, _, _ := unstructured.NestedString(obj.Object, "status", "pipelineRun")
		if !strings.HasPrefix(pr, controllerNS+"/") {
			t.Errorf("status.pipelineRun %q is not in the controller namespace", pr)
		}
		e.waitNoPipelineRun(uid, wait)
		if n := e.prSeen.count(uid); n != 1 {
			t.Errorf("%d PipelineRuns were created for one request", n)
		}
		final := e.waitRequest("tenant-a", "sign-1", "finalizer removal", wait, func(o *unstructured.Unstructured) bool {
			return len(o.GetFinalizers()) == 0
		}, ctrl)
		_ = final
		reasons := e.eventReasons("tenant-a", "sign-1")
		for _, want := range []string{"Accepted", "Started", "Succeeded"} {
			if !contains(reasons, want) {
				t.Errorf("no %s event on the request; events: %v", want, reasons)
			}
		}
	})

	t.Run("the PipelineRun is templated from the request", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "template-1", refParams: map[string]string{
			"name": "never-ends", "kind": "pipeline", "namespace": "somewhere-else"},
			params:   map[string]string{"b": "2", "a": "1"},
			timeouts: map[string]string{"pipeline": "1h"},
			labels: map[string]string{"team": "release", "internal-services.appstudio.openshift.io/name": "spoofed",
				"internal-services.appstudio.openshift.io/pipeline-name":   "never-ends",
				"internal-services.appstudio.openshift.io/pipelinerun-uid": "0f1e2d3c"}})
		uid := string(ir.GetUID())
		e.waitRequest("tenant-a", "template-1", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		runs := e.pipelineRuns(uid)
		if len(runs) != 1 {
			t.Fatalf("want one PipelineRun, got %d", len(runs))
		}
		pr := runs[0].Object
		params, _, _ := unstructured.NestedSlice(pr, "spec", "params")
		b, _ := json.Marshal(params)
		if string(b) != `[{"name":"a","value":"1"},{"name":"b","value":"2"}]` {
			t.Errorf("params not sorted by name: %s", b)
		}
		refParams, _, _ := unstructured.NestedSlice(pr, "spec", "pipelineRef", "params")
		got := map[string]interface{}{}
		for _, p := range refParams {
			m := p.(map[string]interface{})
			got[fmt.Sprint(m["name"])] = m["value"]
		}
		if got["namespace"] != controllerNS || got["kind"] != "pipeline" || got["name"] != "never-ends" || len(refParams) != 3 {
			t.Errorf("cluster resolver params (namespace pinned, kind pipeline): %v", refParams)
		}
		labels := runs[0].GetLabels()
		if labels["team"] != "release" || labels["internal-services.appstudio.openshift.io/name"] != "template-1" ||
			labels["internal-services.appstudio.openshift.io/namespace"] != "tenant-a" ||
			labels["pipelines.appstudio.openshift.io/type"] != "release" ||
			labels["internal-services.appstudio.openshift.io/pipeline-name"] != "never-ends" ||
			labels["internal-services.appstudio.openshift.io/pipelinerun-uid"] != "0f1e2d3c" {
			t.Errorf("labels: %v", labels)
		}
		ann := runs[0].GetAnnotations()
		if ann["operator-sdk/primary-resource"] != "tenant-a/template-1" ||
			ann["operator-sdk/primary-resource-type"] != "InternalRequest.appstudio.redhat.com" {
			t.Errorf("owner annotations: %v", ann)
		}
		// Tekton writes its defaults back in its own spelling ("1h0m0s").
		if v, _, _ := unstructured.NestedString(pr, "spec", "timeouts", "pipeline"); v != "1h" && v != "1h0m0s" {
			t.Errorf("timeouts.pipeline = %q", v)
		}
		ws, _, _ := unstructured.NestedSlice(pr, "spec", "workspaces")
		if len(ws) != 1 {
			t.Fatalf("workspaces: %v", ws)
		}
		w := ws[0].(map[string]interface{})
		size, _, _ := unstructured.NestedString(w, "volumeClaimTemplate", "spec", "resources", "requests", "storage")
		if w["name"] != "workspace" || size != "2Gi" {
			t.Errorf("workspace from config: %v", w)
		}
		if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(context.Background(), "template-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", "template-1", "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
	})

	t.Run("failure carries the pipeline's message", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "fail-1", refParams: clusterRef("always-fails")})
		obj := e.waitRequest("tenant-a", "fail-1", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "Tasks Completed: 1 (Failed: 1")
		e.waitNoPipelineRun(string(ir.GetUID()), wait)
	})

	t.Run("a request for another kind than pipeline is refused", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "kind-task", refParams: map[string]string{
			"name": "sign-release", "kind": "task"}})
		obj := e.waitRequest("tenant-a", "kind-task", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, `is "task": the cluster resolver only runs Pipelines here`)
		if n := e.prSeen.count(string(ir.GetUID())); n != 0 {
			t.Errorf("a refused request got %d PipelineRuns", n)
		}
	})

	t.Run("unknown pipeline fails with Tekton's message", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "unknown-1", refParams: clusterRef("does-not-exist")})
		obj := e.waitRequest("tenant-a", "unknown-1", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "does-not-exist")
	})

	t.Run("namespace not on the allow list is rejected and nothing runs", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-b", name: "reject-1", refParams: clusterRef("sign-release")})
		obj := e.waitRequest("tenant-b", "reject-1", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "rejection message", msg, "tenant-b")
		if v, _, _ := unstructured.NestedString(obj.Object, "status", "completionTime"); v == "" {
			t.Errorf("a rejected request has no completionTime")
		}
		time.Sleep(time.Second)
		if n := e.prSeen.count(string(ir.GetUID())); n != 0 {
			t.Errorf("a rejected request got %d PipelineRuns", n)
		}
		if len(obj.GetFinalizers()) != 0 {
			t.Errorf("a rejected request has finalizers %v", obj.GetFinalizers())
		}
		if !contains(e.eventReasons("tenant-b", "reject-1"), "Rejected") {
			t.Errorf("no Rejected event")
		}
	})

	t.Run("git URL outside the allowed list is rejected", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "git-1", resolver: "git", refParams: map[string]string{
			"url": "https://evil.example.com/pipelines.git", "revision": "main", "pathInRepo": "pipelines/sign-release.yaml"}})
		obj := e.waitRequest("tenant-a", "git-1", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "rejection message", msg, "evil.example.com")
		if n := e.prSeen.count(string(ir.GetUID())); n != 0 {
			t.Errorf("a rejected request got %d PipelineRuns", n)
		}
	})

	// The bed has no network: Tekton's git resolver really tries the clone,
	// and its error reaches the request.
	t.Run("a git request with an allowed URL goes to Tekton's git resolver", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "git-2", resolver: "git", refParams: map[string]string{
			"url": "https://git.example.com/release/pipelines.git", "revision": "main", "pathInRepo": "pipelines/sign-release.yaml"},
			params: map[string]string{"component": "api"}})
		obj := e.waitRequest("tenant-a", "git-2", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "git clone error")
		mustContain(t, "failure message", msg, "https://git.example.com/release/pipelines.git")
	})

	t.Run("a config edit applies at once", func(t *testing.T) {
		e.t = t
		e.setConfig(false, []string{"tenant-a", "tenant-b"})
		defer e.setConfig(false, []string{"tenant-a"})
		time.Sleep(500 * time.Millisecond)
		e.create(request{ns: "tenant-b", name: "allowed-later", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-b", "allowed-later", "success", wait, hasCondition("True", "Succeeded"), ctrl)
	})

	t.Run("missing config rejects with a message that says so", func(t *testing.T) {
		e.t = t
		if err := e.internalC.Resource(configGVR).Namespace(controllerNS).Delete(context.Background(), "config", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		defer e.setConfig(false, []string{"tenant-a"})
		time.Sleep(500 * time.Millisecond)
		e.create(request{ns: "tenant-a", name: "no-config", refParams: clusterRef("sign-release")})
		obj := e.waitRequest("tenant-a", "no-config", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "rejection message", msg, "not found")
	})

	t.Run("debug keeps the PipelineRun", func(t *testing.T) {
		e.t = t
		e.setConfig(true, []string{"tenant-a"})
		defer e.setConfig(false, []string{"tenant-a"})
		time.Sleep(500 * time.Millisecond)
		ir := e.create(request{ns: "tenant-a", name: "debug-1", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-a", "debug-1", "success", wait, hasCondition("True", "Succeeded"), ctrl)
		time.Sleep(2 * time.Second)
		if n := len(e.pipelineRuns(string(ir.GetUID()))); n != 1 {
			t.Errorf("debug: want the PipelineRun kept, found %d", n)
		}
	})

	t.Run("deleting a running request cancels and removes its PipelineRun", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "delete-1", refParams: clusterRef("never-ends")})
		uid := string(ir.GetUID())
		obj := e.waitRequest("tenant-a", "delete-1", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		if !contains(obj.GetFinalizers(), finalizer) {
			t.Fatalf("a running request has no finalizer: %v", obj.GetFinalizers())
		}
		if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(context.Background(), "delete-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", "delete-1", "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
		e.waitNoPipelineRun(uid, wait)
		if !contains(e.eventReasons("tenant-a", "delete-1"), "Cancelled") {
			t.Errorf("no Cancelled event")
		}
	})

	t.Run("a PipelineRun deleted behind the controller's back fails the request", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "stolen-1", refParams: clusterRef("never-ends")})
		uid := string(ir.GetUID())
		e.waitRequest("tenant-a", "stolen-1", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		runs := e.pipelineRuns(uid)
		if len(runs) != 1 {
			t.Fatalf("want one PipelineRun, got %d", len(runs))
		}
		if err := e.internalC.Resource(prGVR).Namespace(controllerNS).Delete(context.Background(), runs[0].GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		obj := e.waitRequest("tenant-a", "stolen-1", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "failure message", msg, "deleted")
		time.Sleep(2 * time.Second)
		if n := e.prSeen.count(uid); n != 1 {
			t.Errorf("the request was started again: %d PipelineRuns", n)
		}
	})

	t.Run("a pipeline timeout set by the request is enforced by Tekton", func(t *testing.T) {
		e.t = t
		ir := e.create(request{ns: "tenant-a", name: "timeout-1", refParams: clusterRef("never-ends"),
			timeouts: map[string]string{"pipeline": "3s"}})
		obj := e.waitRequest("tenant-a", "timeout-1", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "timeout message", msg, "PipelineRunTimeout")
		mustContain(t, "timeout message", msg, `failed to finish within "3s"`)
		e.waitNoPipelineRun(string(ir.GetUID()), wait)
	})

	// The backstop for a run Tekton lost track of: with Tekton's controller
	// away, the deadline (timeout plus grace) cancels and fails the request.
	t.Run("controller-side deadline cancels a run Tekton does not end", func(t *testing.T) {
		e.t = t
		if err := e.internal.StopTekton(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := e.internal.StartTekton(); err != nil {
				t.Fatal(err)
			}
		}()
		ir := e.create(request{ns: "tenant-a", name: "deadline-1", refParams: clusterRef("never-ends"),
			timeouts: map[string]string{"pipeline": "3s"}})
		obj := e.waitRequest("tenant-a", "deadline-1", "failure", wait, hasCondition("False", "Failed"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "deadline message", msg, "did not finish within")
		e.waitNoPipelineRun(string(ir.GetUID()), wait)
	})

	t.Run("a policy that loops forever rejects, and others are still served", func(t *testing.T) {
		e.t = t
		loop := filepath.Join(e.policyDir, "zz_loop.lua")
		if err := os.WriteFile(loop, []byte("return function(request, config)\n  while true do end\nend\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // the reload period is 2 s
		e.create(request{ns: "tenant-a", name: "loop-1", refParams: clusterRef("sign-release")})
		obj := e.waitRequest("tenant-a", "loop-1", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "rejection message", msg, "zz_loop.lua")
		mustContain(t, "rejection message", msg, "budget")
		if err := os.Remove(loop); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		e.create(request{ns: "tenant-a", name: "after-loop", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-a", "after-loop", "success", wait, hasCondition("True", "Succeeded"), ctrl)
	})

	t.Run("a policy with a syntax error keeps the last good set", func(t *testing.T) {
		e.t = t
		broken := filepath.Join(e.policyDir, "broken.lua")
		if err := os.WriteFile(broken, []byte("return function(request, config\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(broken)
		time.Sleep(3 * time.Second)
		mustContain(t, "controller log", ctrl.log(), "broken.lua")
		e.create(request{ns: "tenant-b", name: "still-denied", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-b", "still-denied", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		e.create(request{ns: "tenant-a", name: "still-allowed", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-a", "still-allowed", "success", wait, hasCondition("True", "Succeeded"), ctrl)
	})

	t.Run("the internal cluster unreachable for a while: logged, then served", func(t *testing.T) {
		e.t = t
		if err := e.internal.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		e.create(request{ns: "tenant-a", name: "outage-1", refParams: clusterRef("sign-release")})
		time.Sleep(4 * time.Second)
		if st, _, _ := condition(e.get("tenant-a", "outage-1")); st == "False" {
			t.Fatalf("a request was failed because the internal cluster was briefly away")
		}
		if err := e.internal.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", "outage-1", "success", 90*time.Second, hasCondition("True", "Succeeded"), ctrl)
		log := ctrl.log()
		mustContain(t, "controller log", log, `"msg":"list/watch failed"`)
		mustContain(t, "controller log", log, `"cluster":"internal"`)
	})

	ctrl.stop(t)
	e.t = t

	t.Run("killed at every step and restarted, one PipelineRun", func(t *testing.T) {
		e.t = t
		e.pipeline("slow-release", "succeed", "4s", `[{"name":"signature","value":"slow"}]`)
		ir := e.create(request{ns: "tenant-a", name: "crash-1", refParams: clusterRef("slow-release")})
		uid := string(ir.GetUID())
		steps := []struct {
			name string
			done func(*unstructured.Unstructured) bool
		}{
			{"finalizer added", func(o *unstructured.Unstructured) bool { return contains(o.GetFinalizers(), finalizer) }},
			{"PipelineRun created", func(*unstructured.Unstructured) bool { return e.prSeen.count(uid) > 0 }},
			{"status Running", hasCondition("Unknown", "Running")},
			// The controller may finish the request within milliseconds of
			// the run ending; either state means this step was reached.
			{"PipelineRun done", func(o *unstructured.Unstructured) bool {
				if finished(o) {
					return true
				}
				for _, pr := range e.pipelineRuns(uid) {
					if c, _, _ := unstructured.NestedSlice(pr.Object, "status", "conditions"); len(c) > 0 {
						if c[0].(map[string]interface{})["status"] == "True" {
							return true
						}
					}
				}
				return false
			}},
			{"status Succeeded", hasCondition("True", "Succeeded")},
		}
		for i, s := range steps {
			c := e.startController("crash")
			e.waitRequest("tenant-a", "crash-1", s.name, wait, s.done, c)
			c.kill()
			t.Logf("killed the controller right after step %d: %s", i+1, s.name)
		}
		c := e.startController("crash")
		obj := e.waitRequest("tenant-a", "crash-1", "success", wait, hasCondition("True", "Succeeded"), c)
		e.waitNoPipelineRun(uid, wait)
		e.waitRequest("tenant-a", "crash-1", "finalizer removal", wait, func(o *unstructured.Unstructured) bool {
			return len(o.GetFinalizers()) == 0
		}, c)
		if n := e.prSeen.count(uid); n != 1 {
			t.Errorf("%d PipelineRuns were created across restarts; want exactly 1", n)
		}
		results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
		if results["signature"] != "slow" {
			t.Errorf("results after restarts: %v", results)
		}
		c.stop(t)
	})

	t.Run("SIGTERM stops the controller cleanly", func(t *testing.T) {
		c := e.startController("sigterm")
		time.Sleep(2 * time.Second)
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the controller did not stop on SIGTERM")
		}
		if code := c.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM; log:\n%s", code, c.log())
		}
	})
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// metric reads one sample from a controller's /metrics; -1 when absent.
func metric(port int, name string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func waitMetric(t *testing.T, port int, name string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for metric(port, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("port %d: %s did not become %v (is %v)", port, name, want, metric(port, name))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestLeaderElection(t *testing.T) {
	e := setup(t)
	p1, p2 := freePort(t), freePort(t)
	args := func(port int) []string {
		return []string{"--leader-elect", "--leader-election-id", "e2e-leader",
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	}
	first := e.startController("leader-1", args(p1)...)
	waitMetric(t, p1, "internal_services_leader", 1, 30*time.Second)
	second := e.startController("leader-2", args(p2)...)
	time.Sleep(3 * time.Second)
	if v := metric(p2, "internal_services_leader"); v != 0 {
		t.Fatalf("a second replica leads too (leader gauge %v)", v)
	}
	e.create(request{ns: "tenant-a", name: "led-1", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "led-1", "success", 60*time.Second, hasCondition("True", "Succeeded"), first)

	// Killed without releasing the Lease: the other replica takes over once
	// it expires.
	first.kill()
	waitMetric(t, p2, "internal_services_leader", 1, 45*time.Second)
	e.create(request{ns: "tenant-a", name: "led-2", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "led-2", "success", 60*time.Second, hasCondition("True", "Succeeded"), second)
	if v := metric(p2, "internal_services_reconciles_total{queue=\"requests\"}"); v < 1 {
		t.Errorf("the new leader reports %v reconciles", v)
	}

	// Stopped with SIGTERM, a leader gives the Lease up: a standby leads
	// within its 2 s retry, long before the 15 s Lease would expire.
	p3 := freePort(t)
	third := e.startController("leader-3", args(p3)...)
	time.Sleep(3 * time.Second)
	if v := metric(p3, "internal_services_leader"); v != 0 {
		t.Fatalf("a standby leads while the leader runs (leader gauge %v)", v)
	}
	stopped := time.Now()
	second.stop(t)
	if code := second.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the leader exited with %d after SIGTERM", code)
	}
	mustContain(t, "leader log", second.log(), "released the Lease")
	waitMetric(t, p3, "internal_services_leader", 1, 8*time.Second)
	t.Logf("the standby led %v after the leader got SIGTERM", time.Since(stopped).Round(100*time.Millisecond))
	e.create(request{ns: "tenant-a", name: "led-3", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "led-3", "success", 60*time.Second, hasCondition("True", "Succeeded"), third)
	third.stop(t)
}
