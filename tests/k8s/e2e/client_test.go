package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clientProc is one run of internal-request or wait-for-internal-request.
type clientProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	code           int
}

var createdLine = regexp.MustCompile(`(?m)^InternalRequest '([^']+)' created\.$`)

// startClient runs command (a name in the build directory) as the identity
// of kubeconfig, which it finds in KUBECONFIG as a Task's script would.
func (e *env) startClient(kubeconfig, command string, args ...string) *clientProc {
	e.t.Helper()
	p := &clientProc{done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(buildDir(e.t), command), args...)
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = dieWithTest()
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the exit code, failing the test if the client outlives timeout.
func (p *clientProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%v did not end within %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, timeout, p.stdout.String(), p.stderr.String())
		return -1
	}
}

// name waits for the "created." line and returns the request's name.
func (p *clientProc) name(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := createdLine.FindStringSubmatch(p.stdout.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("%v ended (exit %d) without creating a request\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, p.code, p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v created nothing within %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, timeout, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a client to its end and returns its exit code.
func (e *env) runClient(kubeconfig, command string, args ...string) (*clientProc, int) {
	e.t.Helper()
	p := e.startClient(kubeconfig, command, args...)
	return p, p.wait(e.t, 90*time.Second)
}

func (p *clientProc) expect(t *testing.T, code int, stdout ...string) {
	t.Helper()
	out := p.stdout.String()
	if p.code != code {
		t.Errorf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], p.code, code, out, p.stderr.String())
	}
	for _, s := range stdout {
		mustContain(t, "stdout", out, s)
	}
}

// lastJSON is the results JSON: the last line of stdout.
func (p *clientProc) lastJSON(t *testing.T) map[string]interface{} {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	var v map[string]interface{}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("the last line of stdout is not a JSON object (%v):\n%s", err, p.stdout.String())
	}
	return v
}

// clientKubeconfig is the identity of a release pipeline in ns: its
// ServiceAccount with the Role shipped in deploy/remote/release and nothing
// else; with withNamespace, the kubeconfig's context names ns.
func (e *env) clientKubeconfig(ns string, withNamespace bool) string {
	e.t.Helper()
	dir := filepath.Join(e.root, "deploy", "remote", "release")
	e.kubectl(e.remote, "apply", "-n", ns, "-f", filepath.Join(dir, "role.yaml"), "-f", filepath.Join(dir, "rolebinding.yaml"))
	path, err := e.remote.Kubeconfig("system:serviceaccount:"+ns+":release-service-account",
		"system:serviceaccounts", "system:serviceaccounts:"+ns)
	if err != nil {
		e.t.Fatal(err)
	}
	if withNamespace {
		copyPath := filepath.Join(e.t.TempDir(), "client.kubeconfig")
		b, err := os.ReadFile(path)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(copyPath, b, 0o600); err != nil {
			e.t.Fatal(err)
		}
		e.kubectl(e.remote, "config", "--kubeconfig", copyPath, "set-context", "--current", "--namespace", ns)
		path = copyPath
	}
	return path
}

// auditVerbs counts, by verb, the remote API server's answers to requests
// that match (URI and user name).
func (e *env) auditVerbs(match func(uri, user string) bool) map[string]int {
	e.t.Helper()
	f, err := os.Open(e.remote.AuditLog)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	verbs := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEntry
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Stage == "ResponseComplete" && match(ev.RequestURI, ev.User.Username) {
			verbs[ev.Verb]++
		}
	}
	return verbs
}

func clusterArgs(pipeline string) []string {
	return []string{"--resolver", "cluster", "--resolver-param", "name=" + pipeline,
		"--resolver-param", "kind=pipeline", "--resolver-param", "namespace=" + controllerNS}
}

func TestClient(t *testing.T) {
	e := setup(t)
	ctrl := e.startController("controller")
	if err := e.remote.InstallCRDs(true); err != nil {
		t.Fatal(err)
	}
	kcA := e.clientKubeconfig("tenant-a", true)
	kcB := e.clientKubeconfig("tenant-b", false)
	wait := 60 * time.Second
	_ = ctrl

	t.Run("success: exit 0, results JSON with string, array and object results", func(t *testing.T) {
		e.t = t
		resDir := t.TempDir()
		args := append(clusterArgs("sign-release"), "-p", "component=web", "-l", "case=success", "-t", "120",
			"--results-dir", resDir)
		p, _ := e.runClient(kcA, "internal-request", args...)
		p.expect(t, 0, "Sync flag set to true.", "All InternalRequests have been completed", "Result: success")
		name := p.name(t, 0)
		defer os.Remove("/tmp/" + name + "-output.json")
		mustContain(t, "stdout", p.stdout.String(), "  "+name+": succeeded\n")
		obj := e.get("tenant-a", name)
		if obj == nil {
			t.Fatalf("request %s is not in tenant-a (the kubeconfig's namespace)", name)
		}
		if !strings.HasPrefix(name, "sign-release-") {
			t.Errorf("name %q does not start with the pipeline's name", name)
		}
		pr, _, _ := unstructured.NestedString(obj.Object, "status", "pipelineRun")
		mustContain(t, "stdout", p.stdout.String(), "  "+name+": pipelineRun "+pr+"\n")
		res := p.lastJSON(t)
		if res["signature"] != "signed:web" {
			t.Errorf("string result: %v", res)
		}
		var digests []string
		if err := json.Unmarshal([]byte(fmt.Sprint(res["digests"])), &digests); err != nil || len(digests) != 2 {
			t.Errorf("array result: %v (%v)", res["digests"], err)
		}
		var report map[string]string
		if err := json.Unmarshal([]byte(fmt.Sprint(res["report"])), &report); err != nil || report["verdict"] != "ok" {
			t.Errorf("object result: %v (%v)", res["report"], err)
		}
		// The existing client's record of each finished request.
		out, err := os.ReadFile("/tmp/" + name + "-output.json")
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]string
		if err := json.Unmarshal(bytes.TrimSpace(out), &rec); err != nil || rec["name"] != name || rec["pipelineRun"] != pr {
			t.Errorf("/tmp/%s-output.json: %q (%v)", name, out, err)
		}
		// Tekton results.
		want := map[string]string{"requestName": name, "requestReason": "Succeeded", "genericResult": ""}
		for f, v := range want {
			b, err := os.ReadFile(filepath.Join(resDir, f))
			if err != nil || string(b) != v {
				t.Errorf("result %s: %q (%v), want %q", f, b, err, v)
			}
		}
		b, _ := os.ReadFile(filepath.Join(resDir, "requestResults"))
		var fromFile map[string]interface{}
		if err := json.Unmarshal(b, &fromFile); err != nil || fromFile["signature"] != "signed:web" {
			t.Errorf("requestResults: %q (%v)", b, err)
		}
		// By watch: the client listed and watched its request, never polled it.
		verbs := e.auditVerbs(func(uri, _ string) bool { return strings.Contains(uri, "metadata.name%3D"+name) })
		if verbs["watch"] == 0 || verbs["list"] == 0 || verbs["get"] != 0 {
			t.Errorf("the client's requests for %s: %v; want list and watch, no get", name, verbs)
		}

		// The wait command, by its own name, on the finished request: the
		// same results, into --results-file, and the stdout JSON-free.
		file := filepath.Join(t.TempDir(), "results.json")
		w, _ := e.runClient(kcA, "wait-for-internal-request", "-n", name, "--results-file", file)
		w.expect(t, 0, "Result: success")
		b, _ = os.ReadFile(file)
		var again map[string]interface{}
		if err := json.Unmarshal(b, &again); err != nil || again["signature"] != "signed:web" {
			t.Errorf("--results-file: %q (%v)", b, err)
		}
		if strings.Contains(w.stdout.String(), "signed:web") {
			t.Errorf("with --results-file the results went to stdout too:\n%s", w.stdout.String())
		}
		if out, _ := os.ReadFile("/tmp/" + name + "-output.json"); strings.Count(string(out), "\n") != 2 {
			t.Errorf("a second wait did not append to /tmp/%s-output.json: %q", name, out)
		}
	})

	t.Run("failure: exit 21", func(t *testing.T) {
		e.t = t
		p, _ := e.runClient(kcA, "internal-request", append(clusterArgs("always-fails"), "-t", "120")...)
		p.expect(t, 21, "ERROR: At least one InternalRequest failed", "Result: failure")
		name := p.name(t, 0)
		defer os.Remove("/tmp/" + name + "-output.json")
		mustContain(t, "stdout", p.stdout.String(), "  "+name+": Failed\n")
		if _, r, _ := condition(e.get("tenant-a", name)); r != "Failed" {
			t.Errorf("request reason %q, want Failed", r)
		}
	})

	t.Run("rejection: exit 21", func(t *testing.T) {
		e.t = t
		p, _ := e.runClient(kcB, "internal-request", append(clusterArgs("sign-release"), "--namespace", "tenant-b", "-t", "120")...)
		p.expect(t, 21, "Result: failure")
		name := p.name(t, 0)
		defer os.Remove("/tmp/" + name + "-output.json")
		mustContain(t, "stdout", p.stdout.String(), "  "+name+": Rejected\n")
		mustContain(t, "stdout", p.stdout.String(), `"reason":"Rejected"`)
	})

	t.Run("timeout: exit 124, the request left running", func(t *testing.T) {
		e.t = t
		p, _ := e.runClient(kcA, "internal-request", append(clusterArgs("never-ends"), "-t", "3")...)
		p.expect(t, 124, "ERROR: Timeout while waiting", "Result: timeout")
		name := p.name(t, 0)
		if obj := e.get("tenant-a", name); obj == nil || finished(obj) {
			t.Errorf("after a plain timeout the request is gone or finished: %v", obj)
		}
		if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", name, "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
	})

	t.Run("timeout with --delete-on-timeout cancels the PipelineRun", func(t *testing.T) {
		e.t = t
		p := e.startClient(kcA, "internal-request", append(clusterArgs("never-ends"), "-t", "8", "--delete-on-timeout")...)
		name := p.name(t, 30*time.Second)
		obj := e.waitRequest("tenant-a", name, "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		uid := string(obj.GetUID())
		p.wait(t, wait)
		p.expect(t, 124, "Result: timeout", "InternalRequest '"+name+"' deleted")
		e.waitRequest("tenant-a", name, "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
		e.waitNoPipelineRun(uid, wait)
		if n := e.prSeen.count(uid); n != 1 {
			t.Errorf("%d PipelineRuns for the request, want the one that was cancelled", n)
		}
		if !contains(e.eventReasons("tenant-a", name), "Cancelled") {
			t.Errorf("no Cancelled event on %s", name)
		}
	})

	t.Run("two requests by label, one failing: exit 21", func(t *testing.T) {
		e.t = t
		var names []string
		for _, pl := range []string{"sign-release", "always-fails"} {
			p, _ := e.runClient(kcA, "internal-request", append(clusterArgs(pl), "-s", "false",
				"-p", "component=two", "-l", "batch=two", "-l", "team=release")...)
			p.expect(t, 0)
			if strings.Contains(p.stdout.String(), "Waiting") {
				t.Errorf("-s false waited:\n%s", p.stdout.String())
			}
			names = append(names, p.name(t, 0))
		}
		for _, n := range names {
			defer os.Remove("/tmp/" + n + "-output.json")
		}
		w, _ := e.runClient(kcA, "wait-for-internal-request", "-l", "batch=two", "-l", "team=release", "-t", "120")
		w.expect(t, 21, "  "+names[0]+": succeeded\n", "  "+names[1]+": Failed\n", "Result: failure")
		res := w.lastJSON(t)
		if len(res) != 2 {
			t.Fatalf("results by label: want one entry per request, got %v", res)
		}
		if r, _ := res[names[0]].(map[string]interface{}); r["signature"] != "signed:two" {
			t.Errorf("results of %s: %v", names[0], res[names[0]])
		}
	})

	t.Run("the remote API server restarted in the middle of a wait", func(t *testing.T) {
		e.t = t
		e.pipeline("slow-release", "succeed", "20s", `[{"name":"signature","value":"slow"}]`)
		p := e.startClient(kcA, "internal-request", append(clusterArgs("slow-release"), "-t", "180")...)
		name := p.name(t, 30*time.Second)
		defer os.Remove("/tmp/" + name + "-output.json")
		e.waitRequest("tenant-a", name, "Running", wait, hasCondition("Unknown", "Running"), ctrl)
		if err := e.remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if finished(e.get("tenant-a", name)) {
			t.Fatalf("the pipeline ended before the API server was back; nothing was proven")
		}
		p.wait(t, 120*time.Second)
		p.expect(t, 0, "Result: success")
		if res := p.lastJSON(t); res["signature"] != "slow" {
			t.Errorf("results: %v", res)
		}
	})

	t.Run("a 410 during the wait: the client relists and sees the end", func(t *testing.T) {
		e.t = t
		e.pipeline("short-release", "succeed", "10s", `[{"name":"signature","value":"short"}]`)
		p := e.startClient(kcA, "internal-request", append(clusterArgs("short-release"), "-t", "180")...)
		name := p.name(t, 30*time.Second)
		defer os.Remove("/tmp/" + name + "-output.json")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(p.stdout.String(), "Waiting for InternalRequest") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // the list and the watch are on their way
		// Frozen, the client loses its stream before the end (a restart)
		// and misses the end; compaction removes the resourceVersion it
		// will resume from and a second restart empties the API server's
		// watch cache, so the resumed watch gets 410 Gone.
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if finished(e.get("tenant-a", name)) {
			t.Fatalf("the pipeline ended before the stream was cut; nothing was proven")
		}
		if err := e.remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", name, "success", wait, hasCondition("True", "Succeeded"), ctrl)
		if _, err := e.remote.Compact(); err != nil {
			t.Fatal(err)
		}
		if err := e.remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		p.wait(t, 60*time.Second)
		p.expect(t, 0, "Result: success")
		mustContain(t, "stderr", p.stderr.String(), "410")
		if res := p.lastJSON(t); res["signature"] != "short" {
			t.Errorf("results: %v", res)
		}
	})

	t.Run("bad input: exit 1, one clear line, nothing created", func(t *testing.T) {
		e.t = t
		cases := []struct {
			command string
			args    []string
			want    string
		}{
			{"internal-request", []string{"--bogus"}, "internal-request: unknown option --bogus"},
			{"internal-request", append(clusterArgs("sign-release"), "-p", "component"), `-p "component": want key=value`},
			{"internal-request", append(clusterArgs("sign-release"), "-p", "=web"), `-p "=web": want key=value`},
			{"internal-request", append(clusterArgs("sign-release"), "--pipeline-timeout", "1h", "--task-timeout", "1h"),
				"--task-timeout 1h plus --finally-timeout 0h5m0s exceed --pipeline-timeout 1h"},
			{"internal-request", append(clusterArgs("sign-release"), "--task-timeout", "soon"), `--task-timeout "soon" is not a duration`},
			{"internal-request", []string{"--pipeline", "sign-release", "-p", "taskGitUrl=https://git.example.com/x.git"},
				"--pipeline needs -p taskGitUrl=URL and -p taskGitRevision=REV"},
			{"wait-for-internal-request", []string{"-n", "a", "-l", "b=c"}, "give -n NAME or -l key=value, not both"},
			{"wait-for-internal-request", []string{"-p", "a=b"}, "wait-for-internal-request: unknown option -p"},
			{"wait-for-internal-request", []string{"-n", "no-such-request"}, "InternalRequest 'no-such-request' not found in namespace tenant-a"},
		}
		clientUser := func(_, user string) bool { return user == "system:serviceaccount:tenant-a:release-service-account" }
		before := e.auditVerbs(clientUser)["create"]
		for _, c := range cases {
			if c.command == "internal-request" {
				c.args = append(c.args, "-l", "case=bad-input")
			}
			p, code := e.runClient(kcA, c.command, c.args...)
			errText := p.stderr.String()
			if code != 1 || !strings.Contains(errText, c.want) || strings.Count(strings.TrimSpace(errText), "\n") != 0 {
				t.Errorf("%s %v: exit %d, stderr %q; want exit 1 and one line with %q", c.command, c.args, code, errText, c.want)
			}
		}
		list, err := e.remoteC.Resource(irGVR).Namespace("tenant-a").List(context.Background(),
			metav1.ListOptions{LabelSelector: "case=bad-input"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("bad input created %d requests", len(list.Items))
		}
		if after := e.auditVerbs(clientUser)["create"]; after != before {
			t.Errorf("bad input made %d creates reach the API server", after-before)
		}
	})

	t.Run("the Task: server-side dry-run, and its script run as a step would", func(t *testing.T) {
		e.t = t
		dir := filepath.Join(e.root, "deploy", "remote", "release")
		out := e.kubectl(e.remote, "apply", "--dry-run=server", "-n", "tenant-a", "-f", dir)
		for _, want := range []string{"task.tekton.dev/internal-request created (server dry run)",
			"role.rbac.authorization.k8s.io/internal-request-client", "rolebinding.rbac.authorization.k8s.io/internal-request-client"} {
			mustContain(t, "dry-run", out, want)
		}

		step, params := taskStep(t, filepath.Join(dir, "task-internal-request.yaml"))
		params["pipeline"] = "sign-release"
		resDir := t.TempDir()
		env := []string{"KUBECONFIG=" + kcA, "PATH=" + buildDir(t) + ":" + os.Getenv("PATH")}
		for _, ev := range step.Env {
			v := ev.Value
			for k, pv := range params {
				v = strings.ReplaceAll(v, "$(params."+k+")", pv)
			}
			if ev.Name == "RESULTS_DIR" {
				v = resDir
			}
			env = append(env, ev.Name+"="+v)
		}
		// The args as Tekton expands them: params, "--labels", labels.
		args := []string{"-c", step.Script, "internal-request-task",
			"taskGitUrl=https://git.example.com/release/pipelines.git", "taskGitRevision=main", "component=task",
			"--labels", "case=task", "internal-services.appstudio.openshift.io/pipelinerun-uid=run-1"}
		cmd := exec.Command("sh", args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		// The bed has no network: Tekton's git resolver really tries the
		// clone the Task asked for, and its failure comes back as 21.
		if code := cmd.ProcessState.ExitCode(); code != 21 {
			t.Fatalf("the Task's script: exit %d, want 21\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		m := createdLine.FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("no created line:\n%s", stdout.String())
		}
		defer os.Remove("/tmp/" + m[1] + "-output.json")
		obj := e.get("tenant-a", m[1])
		refParams, _, _ := unstructured.NestedSlice(obj.Object, "spec", "pipeline", "pipelineRef", "params")
		ref := fmt.Sprint(refParams)
		mustContain(t, "pipelineRef", ref, "pipelines/internal/sign-release/sign-release.yaml")
		mustContain(t, "pipelineRef", ref, "https://git.example.com/release/pipelines.git")
		if l := obj.GetLabels(); l["case"] != "task" {
			t.Errorf("labels: %v", l)
		}
		if p, _, _ := unstructured.NestedString(obj.Object, "spec", "params", "component"); p != "task" {
			t.Errorf("spec.params.component %q", p)
		}
		for f, want := range map[string]string{"requestName": m[1], "requestReason": "Failed"} {
			if b, _ := os.ReadFile(filepath.Join(resDir, f)); string(b) != want {
				t.Errorf("result %s: %q, want %q", f, b, want)
			}
		}
		b, _ := os.ReadFile(filepath.Join(resDir, "requestMessage"))
		mustContain(t, "requestMessage", string(b), "git clone error")
		mustContain(t, "requestMessage", string(b), "https://git.example.com/release/pipelines.git")

		// A retried step (same pipelinerun-uid) deletes the earlier request first.
		cmd = exec.Command("sh", args...)
		cmd.Env = env
		stdout.Reset()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 21 {
			t.Fatalf("the retried script: exit %d, want 21\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		mustContain(t, "stdout", stdout.String(), "Deleting InternalRequest '"+m[1]+"' of an earlier run")
		if e.get("tenant-a", m[1]) != nil {
			t.Errorf("the earlier request %s is still there", m[1])
		}
		if m2 := createdLine.FindStringSubmatch(stdout.String()); m2 != nil {
			defer os.Remove("/tmp/" + m2[1] + "-output.json")
		}
	})
}

type taskStepSpec struct {
	Script string
	Env    []struct{ Name, Value string }
}

// taskStep reads the Task's only step and its string params' defaults.
func taskStep(t *testing.T, path string) (taskStepSpec, map[string]string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var task struct {
		Spec struct {
			Params []struct {
				Name    string
				Default interface{}
			}
			Steps []taskStepSpec
		}
	}
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&task); err != nil {
		t.Fatal(err)
	}
	if len(task.Spec.Steps) != 1 {
		t.Fatalf("want one step, got %d", len(task.Spec.Steps))
	}
	params := map[string]string{}
	for _, p := range task.Spec.Params {
		if s, ok := p.Default.(string); ok {
			params[p.Name] = s
		}
	}
	return task.Spec.Steps[0], params
}
