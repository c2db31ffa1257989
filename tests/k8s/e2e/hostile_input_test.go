package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// hostileCase is one request built to break the controller, and what must
// become of it.
type hostileCase struct {
	name      string
	ns        string // tenant-a unless given
	req       string // the request's name; the case name's slug unless given
	spec      map[string]any
	labels    map[string]string
	admission string // the API server refuses the create with this; nothing else is checked
	status    string // the final Succeeded condition
	reason    string
	message   []string // substrings of its message
	runs      int      // PipelineRuns that must have been created for it
	log       string   // a line the controller must have logged about it
	check     func(t *testing.T, e *env, obj *unstructured.Unstructured, pr *unstructured.Unstructured)
}

func refTo(pipeline string) map[string]any {
	return map[string]any{"pipelineRef": map[string]any{"resolver": "cluster", "params": []any{
		map[string]any{"name": "name", "value": pipeline},
		map[string]any{"name": "kind", "value": "pipeline"},
	}}}
}

func specWith(pipeline map[string]any, extra map[string]any) map[string]any {
	spec := map[string]any{"pipeline": pipeline}
	for k, v := range extra {
		spec[k] = v
	}
	return spec
}

// createSpec creates a request with any spec, as a client could send it.
func (e *env) createSpec(ns, name string, spec map[string]any, labels map[string]string) (*unstructured.Unstructured, error) {
	meta := map[string]any{"name": name, "namespace": ns}
	if labels != nil {
		l := map[string]any{}
		for k, v := range labels {
			l[k] = v
		}
		meta["labels"] = l
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "appstudio.redhat.com/v1alpha1", "kind": "InternalRequest",
		"metadata": meta, "spec": spec,
	}}
	return e.remoteC.Resource(irGVR).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{})
}

// validDerived checks that every name and label the controller derived for
// a PipelineRun is one Kubernetes accepts.
func validDerived(t *testing.T, pr *unstructured.Unstructured) {
	t.Helper()
	if errs := validation.IsDNS1123Label(pr.GetName()); len(errs) > 0 {
		t.Errorf("PipelineRun name %q: %v", pr.GetName(), errs)
	}
	for k, v := range pr.GetLabels() {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("label key %q: %v", k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s value %q: %v", k, v, errs)
		}
	}
}

func pipelineParams(pr *unstructured.Unstructured) map[string]string {
	list, _, _ := unstructured.NestedSlice(pr.Object, "spec", "params")
	out := map[string]string{}
	for _, p := range list {
		m := p.(map[string]any)
		out[fmt.Sprint(m["name"])] = fmt.Sprint(m["value"])
	}
	return out
}

// hostilePolicies each misbehave only for the request named after them, so
// that one reload arms them all and every other request passes them.
var hostilePolicies = map[string]string{
	"h_loop.lua":    "while true do end",
	"h_alloc.lua":   "local t, s = {}, 'x' while true do s = s .. s t[#t + 1] = s end",
	"h_io.lua":      "local f = io.open('/etc/passwd') return f ~= nil",
	"h_exec.lua":    "os.execute('touch /tmp/hostile-policy-ran') return true",
	"h_require.lua": "local m = require('socket.core') return m ~= nil",
	"h_rep.lua":     "local s = string.rep('x', 1024 * 1024 * 1024) return #s > 0",
	"h_throw.lua":   "error({code = 42})",
	"h_string.lua":  "error('refused: ' .. string.rep('w', 5000))",
}

func writeHostilePolicies(t *testing.T, dir string) {
	for file, body := range hostilePolicies {
		trigger := "pol-" + strings.TrimSuffix(strings.TrimPrefix(file, "h_"), ".lua")
		src := fmt.Sprintf("return function(request)\n  if request.metadata.name ~= %q then return true end\n  %s\nend\n", trigger, body)
		if err := os.WriteFile(filepath.Join(dir, file), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitLog waits until the controller's log has n lines containing sub.
func waitLog(t *testing.T, c *controller, sub string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(c.log(), sub) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the controller did not log %q %d times in %s", sub, n, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestHostileInput(t *testing.T) {
	e := setup(t)
	e.pipeline("plain", "succeed", "1s", "")
	e.pipeline("slow", "succeed", "4s", "")
	e.pipeline("huge-result", "succeed", "1s", `[{"name":"blob","value":"`+strings.Repeat("r", 5000)+`"}]`)
	var many []string
	for i := 0; i < 100; i++ {
		many = append(many, fmt.Sprintf(`{"name":"r%03d","value":"v%03d"}`, i, i))
	}
	e.pipeline("many-results", "succeed", "1s", "["+strings.Join(many, ",")+"]")
	// A resolver nobody serves fails when Tekton gives up on the
	// resolution: after 1 minute unless told otherwise.
	e.kubectl(e.internal, "-n", "tekton-pipelines", "patch", "configmap", "config-defaults", "--type", "merge",
		"-p", `{"data":{"default-maximum-resolution-timeout":"10s"}}`)
	ctrl := e.startController("controller")
	wait := 90 * time.Second

	// Served: a normal request that must succeed whatever else is going on.
	normal := 0
	served := func(t *testing.T) {
		t.Helper()
		normal++
		name := fmt.Sprintf("normal-%d", normal)
		e.t = t
		e.create(request{ns: "tenant-a", name: name, refParams: clusterRef("sign-release"), params: map[string]string{"component": "web"}})
		obj := e.waitRequest("tenant-a", name, "success", wait, hasCondition("True", "Succeeded"), ctrl)
		if r, _, _ := unstructured.NestedString(obj.Object, "status", "results", "signature"); r != "signed:web" {
			t.Errorf("%s: result %q", name, r)
		}
	}
	served(t)

	writeHostilePolicies(t, e.policyDir)
	waitLog(t, ctrl, fmt.Sprintf(`"count":%d`, 2+len(hostilePolicies)), 1, 10*time.Second)

	kb := strings.Repeat("k", 1024)
	mib := map[string]any{}
	for i := 0; i < 16; i++ {
		mib[fmt.Sprintf("p%02d", i)] = strings.Repeat(string(rune('a'+i)), 64*1024)
	}
	thousand := map[string]any{}
	for i := 0; i < 1000; i++ {
		thousand[fmt.Sprintf("param-%04d", i)] = fmt.Sprintf("value %d", i)
	}
	control := "nul\x00 bell\x07 esc\x1b del\x7f crlf\r\n tab\t ls\u2028 bom\ufeff é 😀 ключ"
	long253 := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 70)
	name63 := strings.Repeat("x", 30) + "." + strings.Repeat("y", 32)
	pr := func(name string) map[string]any { return map[string]any{"pipeline": refTo(name)} }

	cases := []hostileCase{
		// What the CRD schema itself refuses never reaches the controller.
		{name: "missing pipelineRef", spec: map[string]any{"pipeline": map[string]any{}},
			admission: "spec.pipeline.pipelineRef: Required value"},
		{name: "missing resolver", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{"params": []any{}}}},
			admission: "spec.pipeline.pipelineRef.resolver: Required value"},
		{name: "param value of the wrong type", spec: specWith(refTo("plain"), map[string]any{"params": map[string]any{"n": 5}}),
			admission: `spec.params.n: Invalid value: "integer"`},
		{name: "ref param without a value", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{map[string]any{"name": "name"}}}}},
			admission: "spec.pipeline.pipelineRef.params[0].value: Required value"},
		// What the schema lets through.
		{name: "empty resolver", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "", "params": []any{}}}},
			status: "False", reason: "Failed", message: []string{"spec.pipeline.pipelineRef.resolver is missing"}},
		{name: "unknown resolver", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "nosuch", "params": []any{map[string]any{"name": "name", "value": "plain"}}}}},
			status: "False", reason: "Failed", message: []string{"resolution took longer than global timeout of 10s", `the Pipeline was asked of resolver "nosuch"`}, runs: 1},
		{name: "cluster ref without a name", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{}}}},
			status: "False", reason: "Failed", message: []string{"name"}, runs: 1},
		{name: "empty ref param name", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{map[string]any{"name": "", "value": "plain"}}}}},
			status: "False", reason: "Failed", message: []string{"spec.pipeline.pipelineRef.params[0].name must be a non-empty string"}},
		{name: "repeated ref param", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{map[string]any{"name": "name", "value": "plain"}, map[string]any{"name": "name", "value": "slow"}}}}},
			status: "False", reason: "Failed", message: []string{`spec.pipeline.pipelineRef.params[1] repeats parameter "name", first given at spec.pipeline.pipelineRef.params[0]`}},
		{name: "a param given twice with two values", spec: specWith(map[string]any{
			"pipelineRef": refTo("plain")["pipelineRef"], "params": []any{map[string]any{"name": "component", "value": "one"}}},
			map[string]any{"params": map[string]any{"component": "two"}}),
			status: "False", reason: "Failed", message: []string{`spec.pipeline.params[0] ("one") conflicts with spec.params.component ("two")`}},
		{name: "tasks timeout beyond the pipeline timeout", spec: specWith(refTo("plain"), map[string]any{"timeouts": map[string]any{"pipeline": "1m", "tasks": "2m"}}),
			status: "False", reason: "Failed", message: []string{`spec.timeouts.tasks ("2m") exceeds spec.timeouts.pipeline ("1m")`}},
		{name: "timeout beyond any duration", spec: specWith(refTo("plain"), map[string]any{"timeouts": map[string]any{"pipeline": "9999999999h"}}),
			status: "False", reason: "Failed", message: []string{`spec.timeouts.pipeline: invalid duration "9999999999h": out of range`}},
		{name: "kind of 100 KiB", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{map[string]any{"name": "name", "value": "plain"},
				map[string]any{"name": "kind", "value": strings.Repeat(kb, 100)}}}}},
			status: "False", reason: "Failed", message: []string{"spec.pipeline.pipelineRef.params[1].value is ", "(102400 bytes)", "the cluster resolver only runs Pipelines here"},
			check: func(t *testing.T, e *env, obj, _ *unstructured.Unstructured) {
				if _, _, msg := condition(obj); len(msg) > 4096 {
					t.Errorf("a message of %d bytes relays the whole value", len(msg))
				}
			}},
		{name: "unknown pipeline with a name of 100 KiB", spec: map[string]any{"pipeline": map[string]any{"pipelineRef": map[string]any{
			"resolver": "cluster", "params": []any{map[string]any{"name": "name", "value": strings.Repeat(kb, 100)}}}}},
			status: "False", reason: "Failed", message: []string{"failed (CouldntGetPipeline)", "kkkk", "... (truncated)"}, runs: 1,
			check: func(t *testing.T, e *env, obj, _ *unstructured.Unstructured) {
				if _, _, msg := condition(obj); len(msg) > 32768 {
					t.Errorf("a message of %d bytes", len(msg))
				}
			}},
		// Size.
		{name: "1 MiB of params", spec: specWith(refTo("slow"), map[string]any{"params": mib}),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				got := pipelineParams(pr)
				if len(got) != 16 || got["p15"] != mib["p15"] {
					t.Errorf("the PipelineRun has %d params, p15 of %d bytes", len(got), len(got["p15"]))
				}
			}},
		{name: "1000 params", spec: specWith(refTo("slow"), map[string]any{"params": thousand}),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				got := pipelineParams(pr)
				if len(got) != 1000 || got["param-0999"] != "value 999" {
					t.Errorf("the PipelineRun has %d params", len(got))
				}
			}},
		// Characters.
		{name: "control and unicode characters in values", spec: specWith(refTo("slow"), map[string]any{"params": map[string]any{"component": control}}),
			labels: map[string]string{"team": "z.Z-9_x"}, status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				if got := pipelineParams(pr)["component"]; got != control {
					t.Errorf("component came through as %q", got)
				}
				if pr.GetLabels()["team"] != "z.Z-9_x" {
					t.Errorf("label not copied: %v", pr.GetLabels())
				}
			}},
		{name: "unicode and control characters in param names", spec: specWith(refTo("slow"), map[string]any{"params": map[string]any{
			"ключ": "v1", "tab\tname": "v2", "😀": "v3"}}),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				got := pipelineParams(pr)
				if got["ключ"] != "v1" || got["tab\tname"] != "v2" || got["😀"] != "v3" {
					t.Errorf("params %v", got)
				}
			}},
		{name: "a param with an empty name", spec: specWith(refTo("plain"), map[string]any{"params": map[string]any{"": "v", "a": "b"}}),
			status: "False", reason: "Failed", message: []string{"spec.params has a parameter with an empty name"}},
		{name: "unicode in a result value", spec: specWith(refTo("sign-release"), map[string]any{"params": map[string]any{
			"component": "é 😀 ключ \u202e rtl"}}),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, _ *unstructured.Unstructured) {
				r, _, _ := unstructured.NestedString(obj.Object, "status", "results", "signature")
				if r != "signed:é 😀 ключ \u202e rtl" {
					t.Errorf("signature result %q", r)
				}
			}},
		// Names.
		{name: "request name of 253 characters", req: long253, spec: pr("slow"),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				if got := pr.GetLabels()["internal-services.appstudio.openshift.io/name"]; got != long253[:60]+".bb" {
					t.Errorf("name label %q", got)
				}
				if got := pr.GetAnnotations()["internal-services.appstudio.openshift.io/request"]; got != "tenant-a/"+long253 {
					t.Errorf("request annotation %q", got)
				}
				if !contains(e.eventReasons("tenant-a", long253), "Succeeded") {
					t.Errorf("no Succeeded event on the request")
				}
			}},
		{name: "request name of 63 characters with a dot", req: name63, spec: pr("slow"),
			labels: map[string]string{"example.com/" + strings.Repeat("k", 63): strings.Repeat("v", 63)},
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				if pr.GetLabels()["internal-services.appstudio.openshift.io/name"] != name63 {
					t.Errorf("name label %v", pr.GetLabels())
				}
				if pr.GetLabels()["example.com/"+strings.Repeat("k", 63)] != strings.Repeat("v", 63) {
					t.Errorf("the longest label was not copied: %v", pr.GetLabels())
				}
				if !strings.HasPrefix(pr.GetName(), "ir-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-yyyyyyyyyyyy-") || len(pr.GetName()) != 63 {
					t.Errorf("PipelineRun name %q", pr.GetName())
				}
			}},
		{name: "request name all digits and dashes", req: "0--0--0", spec: pr("slow"),
			status: "True", reason: "Succeeded", runs: 1},
		{name: "system labels smuggled", spec: pr("slow"), labels: map[string]string{
			"internal-services.appstudio.openshift.io/request-uid": "someone-else",
			"internal-services.appstudio.openshift.io/namespace":   "tenant-b",
			"pipelines.appstudio.openshift.io/type":                "other"},
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, pr *unstructured.Unstructured) {
				l := pr.GetLabels()
				if l[uidLabel] != string(obj.GetUID()) || l["internal-services.appstudio.openshift.io/namespace"] != "tenant-a" ||
					l["pipelines.appstudio.openshift.io/type"] != "release" {
					t.Errorf("system labels taken from the request: %v", l)
				}
			}},
		{name: "namespace not allowed", ns: "tenant-b", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`namespace "tenant-b" is not in the allow list`}},
		// Results.
		{name: "a result larger than a termination message", spec: pr("huge-result"),
			status: "False", reason: "Failed", runs: 1, message: []string{"Failed"}},
		{name: "100 results", spec: pr("many-results"),
			status: "True", reason: "Succeeded", runs: 1,
			check: func(t *testing.T, e *env, obj, _ *unstructured.Unstructured) {
				results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
				if len(results) != 100 || results["r099"] != "v099" {
					t.Errorf("%d results, r099 %q", len(results), results["r099"])
				}
			}},
		// Policies.
		{name: "policy that loops", req: "pol-loop", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_loop.lua" failed: instruction budget exceeded`},
			log: `"level":"warn","msg":"policy \"h_loop.lua\" failed: instruction budget exceeded"`},
		{name: "policy that allocates without bound", req: "pol-alloc", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_alloc.lua" failed: memory limit exceeded`},
			log: `"level":"warn","msg":"policy \"h_alloc.lua\" failed: memory limit exceeded"`},
		{name: "policy that opens a file", req: "pol-io", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_io.lua" failed: h_io.lua:3: attempt to index a nil value (global 'io')`}},
		{name: "policy that runs a command", req: "pol-exec", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_exec.lua" failed: `, "attempt to call a nil value (field 'execute')"}},
		{name: "policy that requires a C module", req: "pol-require", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_require.lua" failed: h_require.lua:3: attempt to call a nil value (global 'require')`}},
		{name: "policy that builds a gigabyte", req: "pol-rep", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_rep.lua" failed: `, "memory limit exceeded: string.rep would build 1073741824 bytes"},
			log: `"msg":"policy \"h_rep.lua\" failed: memory limit exceeded: string.rep would build 1073741824 bytes"`},
		{name: "policy that throws a table", req: "pol-throw", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_throw.lua" failed: (error object is a table value)`},
			log: `"msg":"policy \"h_throw.lua\" failed: (error object is a table value)"`},
		{name: "policy that throws a long string", req: "pol-string", spec: pr("plain"),
			status: "False", reason: "Rejected", message: []string{`policy "h_string.lua" failed: `, "refused: www"},
			check: func(t *testing.T, e *env, obj, _ *unstructured.Unstructured) {
				if _, _, msg := condition(obj); len(msg) > 1100 {
					t.Errorf("a deny message of %d bytes", len(msg))
				}
			}},
	}

	type created struct {
		c   hostileCase
		obj *unstructured.Unstructured
		err error
		pr  *unstructured.Unstructured // the PipelineRun as first seen
	}
	results := make([]*created, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		if c.ns == "" {
			c.ns = "tenant-a"
		}
		if c.req == "" {
			c.req = "h-" + strings.NewReplacer(" ", "-").Replace(strings.ToLower(c.name))
		}
		cases[i] = c
		results[i] = &created{c: c}
	}
	// Every case at once, normal requests among them.
	for i := range results {
		r := results[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.obj, r.err = e.createSpec(r.c.ns, r.c.req, r.c.spec, r.c.labels)
			if r.err != nil || r.c.runs == 0 {
				return
			}
			// Catch the PipelineRun while it exists: debug is off.
			uid := string(r.obj.GetUID())
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				list, err := e.internalC.Resource(prGVR).Namespace(controllerNS).List(context.Background(),
					metav1.ListOptions{LabelSelector: uidLabel + "=" + uid})
				if err == nil && len(list.Items) > 0 {
					r.pr = &list.Items[0]
					return
				}
			}
		}()
	}
	served(t)
	wg.Wait()

	for i, r := range results {
		c := r.c
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			if c.admission != "" {
				if r.err == nil {
					t.Fatalf("the API server accepted the request")
				}
				mustContain(t, "admission error", r.err.Error(), c.admission)
				return
			}
			if r.err != nil {
				t.Fatalf("create: %v", r.err)
			}
			obj := e.waitRequest(c.ns, c.req, c.status+"/"+c.reason, wait, finished, ctrl)
			st, reason, msg := condition(obj)
			shown := msg
			if len(shown) > 400 {
				shown = shown[:400] + fmt.Sprintf("... (%d bytes)", len(msg))
			}
			t.Logf("%s/%s: %s", st, reason, shown)
			if st != c.status || reason != c.reason {
				t.Errorf("condition %s/%s %q; want %s/%s", st, reason, msg, c.status, c.reason)
			}
			for _, sub := range c.message {
				mustContain(t, "message", msg, sub)
			}
			uid := string(obj.GetUID())
			if n := e.prSeen.count(uid); n != c.runs {
				t.Errorf("%d PipelineRuns, want %d", n, c.runs)
			}
			if c.runs > 0 {
				if r.pr == nil {
					t.Fatalf("no PipelineRun was seen")
				}
				validDerived(t, r.pr)
			}
			if c.check != nil {
				c.check(t, e, obj, r.pr)
			}
			if c.log != "" {
				mustContain(t, "controller log", ctrl.log(), c.log)
			}
			e.waitRequest(c.ns, c.req, "no finalizer", wait, func(o *unstructured.Unstructured) bool {
				return len(o.GetFinalizers()) == 0
			}, ctrl)
		})
		if i%10 == 9 {
			served(t)
		}
	}
	e.t = t
	if _, err := os.Stat("/tmp/hostile-policy-ran"); err == nil {
		t.Errorf("a policy ran a command")
	}
	for file := range hostilePolicies {
		_ = os.Remove(filepath.Join(e.policyDir, file))
	}
	waitLog(t, ctrl, `"count":2`, 2, 10*time.Second)
	served(t)

	// Configuration: absent, then without an allow list, then back.
	t.Run("missing config", func(t *testing.T) {
		e.t = t
		if err := e.internalC.Resource(configGVR).Namespace(controllerNS).Delete(context.Background(), "config", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		e.create(request{ns: "tenant-a", name: "no-config", refParams: clusterRef("plain")})
		obj := e.waitRequest("tenant-a", "no-config", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "message", msg, "InternalServicesConfig internal-services/config not found: no remote namespace is allowed")
	})
	t.Run("malformed config", func(t *testing.T) {
		e.t = t
		e.apply(e.internal, "apiVersion: appstudio.redhat.com/v1alpha1\nkind: InternalServicesConfig\nmetadata:\n  name: config\n  namespace: "+
			controllerNS+"\nspec:\n  allowList: [\"\", \"*\", \"tenant-*\", \" tenant-a\", \"tenant-a\\u0000\"]\n")
		time.Sleep(time.Second)
		e.create(request{ns: "tenant-a", name: "bad-config", refParams: clusterRef("plain")})
		obj := e.waitRequest("tenant-a", "bad-config", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
		_, _, msg := condition(obj)
		mustContain(t, "message", msg, `namespace "tenant-a" is not in the allow list of InternalServicesConfig internal-services/config`)
	})
	e.t = t
	e.setConfig(false, []string{"tenant-a"})
	time.Sleep(time.Second)
	served(t)

	// Kubeconfigs: startup errors, one line and exit code 1.
	t.Run("kubeconfigs", func(t *testing.T) {
		e.t = t
		valid, err := os.ReadFile(e.remoteKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		write := func(name, text string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		good := base64.StdEncoding.EncodeToString([]byte("x"))
		kc := func(cluster, user, current string) string {
			return "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n" + cluster +
				"contexts:\n- name: ctx\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n" + user +
				"current-context: " + current + "\n"
		}
		server := "    server: https://127.0.0.1:1\n"
		cases := []struct{ name, path, want string }{
			{"bad base64", write("b64", kc(server+"    certificate-authority-data: \"%%%not base64%%%\"\n", "    token: t\n", "ctx")),
				"certificate-authority-data: invalid base64"},
			{"bad base64 key", write("b64key", kc(server, "    client-certificate-data: "+good+"\n    client-key-data: \"a*b\"\n", "ctx")),
				"client-key-data: invalid base64"},
			{"no server", write("noserver", kc("    insecure-skip-tls-verify: true\n", "    token: t\n", "ctx")),
				`cluster "c" has no server`},
			{"unknown context", write("ctx", kc(server, "    token: t\n", "elsewhere")), `context "elsewhere" not found`},
			{"no current context", write("nocur", strings.Replace(kc(server, "    token: t\n", "x"), "current-context: x\n", "", 1)),
				"no current-context and no context given"},
			{"context without a cluster", write("nocl", strings.Replace(kc(server, "    token: t\n", "ctx"), "{cluster: c, user: u}", "{user: u}", 1)),
				`context "ctx" has no cluster`},
			{"unknown cluster", write("unkcl", strings.Replace(kc(server, "    token: t\n", "ctx"), "{cluster: c,", "{cluster: gone,", 1)),
				`cluster "gone" not found`},
			{"not a mapping", write("scalar", "just a string\n"), "kubeconfig"},
			{"binary garbage", write("garbage", "\x00\xff\xfe"+string(valid[:20])), "kubeconfig"},
		}
		bin := filepath.Join(buildDir(t), "internal-services")
		for _, c := range cases {
			cmd := exec.Command(bin, "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
				"--kubeconfig", e.internalKubeconfig, "--remote-cluster-config-file", c.path, "--lua-dir", filepath.Join(e.root, "lua"))
			cmd.Env = append(os.Environ(), "KUBECONFIG=", "SERVICE_NAMESPACE="+controllerNS)
			done := make(chan struct{})
			var out []byte
			go func() { out, _ = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("%s: the controller did not exit", c.name)
				continue
			}
			text := strings.TrimSpace(string(out))
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("%s: exit %d, want 1: %q", c.name, code, text)
			}
			mustContain(t, c.name, text, "remote")
			mustContain(t, c.name, text, c.path)
			mustContain(t, c.name, text, c.want)
			if strings.Contains(text, "\n") {
				t.Errorf("%s: more than one line: %q", c.name, text)
			}
		}
	})
	e.t = t
	served(t)
	// Stopped here, so that a sanitizer's report at exit is in the log.
	ctrl.stop(t)
	for _, line := range strings.Split(ctrl.log(), "\n") {
		for _, bad := range []string{"AddressSanitizer", "LeakSanitizer", "runtime error:", `"msg":"a metric sample was dropped"`} {
			if strings.Contains(line, bad) {
				t.Errorf("the controller logged %s: %.300s", bad, line)
			}
		}
		// A status or create the API server refused as invalid is a request
		// that would never be answered.
		if strings.Contains(line, `"msg":"reconcile failed"`) && strings.Contains(line, "(422)") {
			t.Errorf("a write was refused: %.300s", line)
		}
	}
	b, _ := json.Marshal(map[string]int{"cases": len(cases), "served": normal})
	t.Logf("hostile input: %s", b)
}
