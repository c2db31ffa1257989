// Package e2e runs the controller end to end on the two-cluster test bed:
// InternalRequests on `remote`, PipelineRuns on `internal` run by real
// Tekton (its controller and resolvers), the controller with its own
// RBAC-restricted identities on both, and kubelet-driver playing the
// kubelet for the Pods Tekton creates.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"internal-services/tests/k8s/bed"
)

var (
	irGVR       = schema.GroupVersionResource{Group: "appstudio.redhat.com", Version: "v1alpha1", Resource: "internalrequests"}
	configGVR   = schema.GroupVersionResource{Group: "appstudio.redhat.com", Version: "v1alpha1", Resource: "internalservicesconfigs"}
	prGVR       = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	pipelineGVR = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}
	eventGVR    = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

const (
	controllerNS = "internal-services"
	uidLabel     = "internal-services.appstudio.openshift.io/request-uid"
	finalizer    = "internal-services.appstudio.openshift.io/pipelinerun-cleanup"
)

// env is the shared test bed of one test run.
type env struct {
	t                  *testing.T
	root               string
	remote, internal   *bed.Cluster
	remoteC, internalC dynamic.Interface
	remoteKubeconfig   string // the controller's identity on remote
	internalKubeconfig string // the controller's identity on internal
	policyDir          string
	logDir             string
	prSeen             *prRecorder
}

func repoRoot(t *testing.T) string {
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func buildDir(t *testing.T) string {
	if d := os.Getenv("IS_BUILD_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), "build")
}

func (e *env) kubectl(c *bed.Cluster, args ...string) string {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.root, ".cache", "bin", "kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("kubectl %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

func (e *env) apply(c *bed.Cluster, yaml string) {
	e.t.Helper()
	// Not t.TempDir(): kubectl splits -f at commas, which subtest names have.
	tmp, err := os.CreateTemp("", "e2e-*.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(yaml); err != nil {
		e.t.Fatal(err)
	}
	tmp.Close()
	e.kubectl(c, "apply", "-f", tmp.Name())
}

func setup(t *testing.T) *env {
	e := &env{t: t, root: repoRoot(t)}
	bin := filepath.Join(buildDir(t), "internal-services")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: build the project first", bin)
	}
	clusters := bed.StartMany(t, "remote", "internal")
	e.remote, e.internal = clusters[0], clusters[1]
	if err := e.remote.InstallCRDs(false); err != nil {
		t.Fatal(err)
	}
	if err := e.internal.StartTekton(); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.remoteC, err = e.remote.Dynamic(); err != nil {
		t.Fatal(err)
	}
	if e.internalC, err = e.internal.Dynamic(); err != nil {
		t.Fatal(err)
	}
	e.logDir = os.Getenv("IS_E2E_LOG_DIR")
	if e.logDir == "" {
		e.logDir = t.TempDir()
	}
	_ = os.MkdirAll(e.logDir, 0o755)

	// The controller's RBAC, exactly as shipped: the rendered kustomize bases.
	e.apply(e.remote, e.kustomize("deploy/remote"))
	e.apply(e.internal, e.kustomize("deploy/internal"))
	if e.remoteKubeconfig, err = e.remote.Kubeconfig("internal-services-remote"); err != nil {
		t.Fatal(err)
	}
	if e.internalKubeconfig, err = e.internal.Kubeconfig("system:serviceaccount:internal-services:internal-services",
		"system:serviceaccounts", "system:serviceaccounts:internal-services"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"tenant-a", "tenant-b"} {
		e.apply(e.remote, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns))
	}
	e.setConfig(false, []string{"tenant-a"})
	e.pipeline("sign-release", "succeed", "1s",
		`[{"name":"signature","value":"signed:$(params.component)"},`+
			`{"name":"digests","value":["sha256:aaa","sha256:bbb"]},`+
			`{"name":"report","value":{"component":"$(params.component)","verdict":"ok"}}]`)
	e.pipeline("always-fails", "fail", "1s", "")
	e.pipeline("never-ends", "hang", "1s", "")

	// Policies: the shipped ones, in a directory the tests may change.
	e.policyDir = t.TempDir()
	for _, p := range []string{"allowlist.lua", "git_url.lua"} {
		b, err := os.ReadFile(filepath.Join(e.root, "policies", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.policyDir, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.startDriver()
	e.prSeen = newPRRecorder(t, e.internalC)
	return e
}

func (e *env) setConfig(debug bool, allow []string) {
	e.t.Helper()
	list, _ := json.Marshal(allow)
	e.apply(e.internal, fmt.Sprintf(`apiVersion: appstudio.redhat.com/v1alpha1
kind: InternalServicesConfig
metadata:
  name: config
  namespace: %s
spec:
  allowList: %s
  allowedGitResolverURLs: ["https://git.example.com/release/pipelines.git"]
  debug: %t
  volumeClaim:
    name: workspace
    size: 2Gi
`, controllerNS, list, debug))
}

// pipeline defines a Pipeline in the controller's namespace whose one Task
// runs one step, played by kubelet-driver: outcome "succeed", "fail" (the
// step exits 1) or "hang" (it never ends); duration is how long the step
// runs; results is a JSON list of {"name","value"}, each value a string, a
// list or an object, which may use $(params.component). Tekton substitutes
// the params, carries the step's results to the Task's and the Pipeline's
// results, with the types the values have.
func (e *env) pipeline(name, outcome, duration, results string) {
	e.t.Helper()
	e.pipelineIn(controllerNS, name, outcome, duration, results)
}

// pipelineIn defines the Pipeline in namespace ns of the internal cluster.
func (e *env) pipelineIn(ns, name, outcome, duration, results string) {
	e.t.Helper()
	var declared []struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	}
	if results != "" {
		if err := json.Unmarshal([]byte(results), &declared); err != nil {
			e.t.Fatalf("pipeline %s: bad results %s: %v", name, results, err)
		}
	}
	env := []map[string]string{{"name": "BED_STEP_DURATION", "value": duration}}
	switch outcome {
	case "fail":
		env = append(env, map[string]string{"name": "BED_STEP_EXIT_CODE", "value": "1"})
	case "hang":
		env = append(env, map[string]string{"name": "BED_STEP_HANG", "value": "true"})
	}
	stepResults := map[string]json.RawMessage{}
	var taskResults, pipelineResults []map[string]any
	for _, r := range declared {
		stepResults[r.Name] = r.Value
		tr := map[string]any{"name": r.Name}
		pr := map[string]any{"name": r.Name, "value": "$(tasks.work.results." + r.Name + ")"}
		switch r.Value[0] {
		case '[':
			tr["type"], pr["type"] = "array", "array"
			pr["value"] = "$(tasks.work.results." + r.Name + "[*])"
		case '{':
			var obj map[string]any
			_ = json.Unmarshal(r.Value, &obj)
			props := map[string]any{}
			for k := range obj {
				props[k] = map[string]string{"type": "string"}
			}
			tr["type"], pr["type"], tr["properties"] = "object", "object", props
			pr["value"] = "$(tasks.work.results." + r.Name + "[*])"
		}
		taskResults = append(taskResults, tr)
		pipelineResults = append(pipelineResults, pr)
	}
	if len(stepResults) > 0 {
		b, _ := json.Marshal(stepResults)
		env = append(env, map[string]string{"name": "BED_STEP_RESULTS", "value": string(b)})
	}
	obj := map[string]any{
		"apiVersion": "tekton.dev/v1", "kind": "Pipeline",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"params":  []any{map[string]any{"name": "component", "type": "string", "default": "none"}},
			"results": pipelineResults,
			"tasks": []any{map[string]any{
				"name":   "work",
				"params": []any{map[string]any{"name": "component", "value": "$(params.component)"}},
				"taskSpec": map[string]any{
					"params":  []any{map[string]any{"name": "component"}},
					"results": taskResults,
					"steps": []any{map[string]any{
						"name": "work", "image": "registry.invalid/busybox", "script": "true", "env": env,
						"securityContext": restrictedSecurityContext,
					}},
				},
			}},
		},
	}
	b, err := json.Marshal(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	e.apply(e.internal, string(b))
}

// restrictedSecurityContext is what Pod Security "restricted", which the
// controller's namespace enforces, asks of every step.
var restrictedSecurityContext = map[string]any{
	"allowPrivilegeEscalation": false,
	"capabilities":             map[string]any{"drop": []string{"ALL"}},
	"runAsNonRoot":             true,
	"runAsUser":                65532,
	"seccompProfile":           map[string]string{"type": "RuntimeDefault"},
}

func (e *env) startDriver() {
	bed.StartKubeletDriver(e.t, e.internal, controllerNS, filepath.Join(e.logDir, "kubelet-driver.log"))
}

// controller is one running internal-services process.
type controller struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func (e *env) startController(name string, extra ...string) *controller {
	e.t.Helper()
	logPath := filepath.Join(e.logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	args := append([]string{
		"--kubeconfig", e.internalKubeconfig,
		"--remote-cluster-config-file", e.remoteKubeconfig,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--policy-dir", e.policyDir, "--lua-dir", filepath.Join(e.root, "lua"),
		"--deadline-grace", "2", "--lua-instruction-budget", "5000000",
	}, extra...)
	cmd := exec.Command(filepath.Join(buildDir(e.t), "internal-services"), args...)
	cmd.Env = append(os.Environ(), "SERVICE_NAMESPACE="+controllerNS)
	if os.Getenv("ASAN_OPTIONS") == "" {
		// Leaks at exit are reported (and the exit code is 23) in the ASan
		// build; other builds ignore the variable.
		cmd.Env = append(cmd.Env, "ASAN_OPTIONS=detect_leaks=1")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithTest()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &controller{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	e.t.Cleanup(func() { c.stop(e.t) })
	return c
}

func (c *controller) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop ends the controller with SIGTERM. With the ASan build, the leak
// checker runs at exit: a leak or a memory error fails the test, as does
// any exit code but 0 after SIGTERM.
func (c *controller) stop(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		c.checkSanitizers(t)
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if code := c.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s: exit code %d after SIGTERM", c.logPath, code)
		}
		c.checkSanitizers(t)
	case <-time.After(10 * time.Second):
		t.Errorf("controller did not stop on SIGTERM")
		c.kill()
	}
}

// checkSanitizers fails t when the controller's log holds a report of
// AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer.
func (c *controller) checkSanitizers(t *testing.T) {
	t.Helper()
	log := c.log()
	for _, mark := range []string{"ERROR: LeakSanitizer", "ERROR: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer"} {
		if i := strings.Index(log, mark); i >= 0 {
			end := i + 6000
			if end > len(log) {
				end = len(log)
			}
			t.Errorf("%s: sanitizer report:\n%s", c.logPath, log[i:end])
			return
		}
	}
}

func (c *controller) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// request builds an InternalRequest.
type request struct {
	ns, name, resolver string
	refParams          map[string]string
	params             map[string]string
	timeouts           map[string]string
	labels             map[string]string
}

func (e *env) create(r request) *unstructured.Unstructured {
	e.t.Helper()
	out, err := e.remoteC.Resource(irGVR).Namespace(r.ns).Create(context.Background(), r.object(), metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("creating request %s/%s: %v", r.ns, r.name, err)
	}
	return out
}

// object is the InternalRequest r describes.
func (r request) object() *unstructured.Unstructured {
	if r.resolver == "" {
		r.resolver = "cluster"
	}
	var refParams []interface{}
	for k, v := range r.refParams {
		refParams = append(refParams, map[string]interface{}{"name": k, "value": v})
	}
	spec := map[string]interface{}{
		"pipeline": map[string]interface{}{"pipelineRef": map[string]interface{}{"resolver": r.resolver, "params": refParams}},
	}
	if r.params != nil {
		p := map[string]interface{}{}
		for k, v := range r.params {
			p[k] = v
		}
		spec["params"] = p
	}
	if r.timeouts != nil {
		tm := map[string]interface{}{}
		for k, v := range r.timeouts {
			tm[k] = v
		}
		spec["timeouts"] = tm
	}
	meta := map[string]interface{}{"name": r.name, "namespace": r.ns}
	if r.labels != nil {
		l := map[string]interface{}{}
		for k, v := range r.labels {
			l[k] = v
		}
		meta["labels"] = l
	}
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "appstudio.redhat.com/v1alpha1", "kind": "InternalRequest",
		"metadata": meta, "spec": spec,
	}}
}

func clusterRef(pipeline string) map[string]string {
	return map[string]string{"name": pipeline, "kind": "pipeline", "namespace": controllerNS}
}

func (e *env) get(ns, name string) *unstructured.Unstructured {
	obj, err := e.remoteC.Resource(irGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("get %s/%s: %v", ns, name, err)
	}
	return obj
}

func condition(obj *unstructured.Unstructured) (status, reason, message string) {
	if obj == nil {
		return "", "", ""
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]interface{}); ok && m["type"] == "Succeeded" {
			return fmt.Sprint(m["status"]), fmt.Sprint(m["reason"]), fmt.Sprint(m["message"])
		}
	}
	return "", "", ""
}

// waitRequest polls until cond holds for the request, and returns it.
func (e *env) waitRequest(ns, name, what string, timeout time.Duration, cond func(*unstructured.Unstructured) bool,
	logs ...*controller) *unstructured.Unstructured {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		obj := e.get(ns, name)
		if cond(obj) {
			return obj
		}
		if time.Now().After(deadline) {
			st, reason, msg := condition(obj)
			var tail string
			for _, c := range logs {
				l := c.log()
				if len(l) > 4000 {
					l = l[len(l)-4000:]
				}
				tail += "\n--- controller log tail ---\n" + l
			}
			e.t.Fatalf("%s/%s: timed out waiting for %s (condition %s/%s %q)%s", ns, name, what, st, reason, msg, tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func finished(obj *unstructured.Unstructured) bool {
	st, _, _ := condition(obj)
	return st == "True" || st == "False"
}

func hasCondition(status, reason string) func(*unstructured.Unstructured) bool {
	return func(obj *unstructured.Unstructured) bool {
		st, r, _ := condition(obj)
		return st == status && r == reason
	}
}

func (e *env) pipelineRuns(uid string) []unstructured.Unstructured {
	list, err := e.internalC.Resource(prGVR).Namespace(controllerNS).List(context.Background(),
		metav1.ListOptions{LabelSelector: uidLabel + "=" + uid})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

func (e *env) waitNoPipelineRun(uid string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(e.pipelineRuns(uid)) > 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("the PipelineRun of request %s was not deleted", uid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) eventReasons(ns, name string) []string {
	list, err := e.remoteC.Resource(eventGVR).Namespace(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		r, _, _ := unstructured.NestedString(ev.Object, "reason")
		out = append(out, r)
	}
	return out
}

// auditEntry is what tests read of one event of an API server's audit log
// (tests/bed/audit-policy.yaml: Metadata level). A field the event lacks
// stays zero: no objectRef for a non-resource URL, no responseStatus at an
// early stage.
type auditEntry struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		APIGroup    string `json:"apiGroup"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// prRecorder remembers every PipelineRun uid ever created for each request
// uid, from a watch on the internal cluster, so that a test can prove that
// no request ever got a second run, even one that was deleted again.
type prRecorder struct {
	mu      sync.Mutex
	runs    map[string]map[string]bool // request uid -> PipelineRun uids
	onAdded func(*unstructured.Unstructured)
}

// hook calls fn, from the watch's goroutine, with every PipelineRun the
// watch reports ADDED from now on (nil stops it).
func (r *prRecorder) hook(fn func(*unstructured.Unstructured)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onAdded = fn
}

func newPRRecorder(t *testing.T, c dynamic.Interface) *prRecorder {
	r := &prRecorder{runs: map[string]map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// List, then watch from the list's resourceVersion, so that a run
	// created and deleted between two watches is still seen; list again
	// when the watch cannot resume (410 after an API server restart).
	relist := func() (string, error) {
		list, err := c.Resource(prGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{LabelSelector: uidLabel})
		if err != nil {
			return "", err
		}
		for i := range list.Items {
			r.record(&list.Items[i])
		}
		return list.GetResourceVersion(), nil
	}
	rv, err := relist()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			if rv == "" {
				if rv, err = relist(); err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
			}
			w, err := c.Resource(prGVR).Namespace(controllerNS).Watch(ctx, metav1.ListOptions{
				LabelSelector: uidLabel, ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				rv = ""
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					rv = ""
					break
				}
				if obj, ok := ev.Object.(*unstructured.Unstructured); ok {
					r.record(obj)
					rv = obj.GetResourceVersion()
					r.mu.Lock()
					fn := r.onAdded
					r.mu.Unlock()
					if fn != nil && ev.Type == watch.Added {
						fn(obj)
					}
				}
			}
			w.Stop()
		}
	}()
	return r
}

func (r *prRecorder) record(obj *unstructured.Unstructured) {
	req := obj.GetLabels()[uidLabel]
	if req == "" {
		return // a bookmark
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs[req] == nil {
		r.runs[req] = map[string]bool{}
	}
	r.runs[req][string(obj.GetUID())] = true
}

func (r *prRecorder) count(requestUID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs[requestUID])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mustContain(t *testing.T, what, text, sub string) {
	t.Helper()
	if !strings.Contains(text, sub) {
		t.Errorf("%s: %q does not contain %q", what, text, sub)
	}
}

// dieWithTest makes a child process end with the test binary, also when
// that is killed and no cleanup runs (a go test timeout, SIGKILL).
func dieWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
