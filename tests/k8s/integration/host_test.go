// Package integration proves the C host's Kubernetes client against real
// kube-apiservers: is_watch (tests/tools/is_watch.c) runs one informer and
// prints its events, and these tests change objects and compare.
package integration

import (
	"bufio"
	"context"
	"encoding/base64"
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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"internal-services/tests/k8s/bed"
)

var irGVR = schema.GroupVersionResource{Group: "appstudio.redhat.com", Version: "v1alpha1", Resource: "internalrequests"}

type event struct {
	Type    string          `json:"type"`
	Key     string          `json:"key"`
	Object  json.RawMessage `json:"object"`
	Count   int             `json:"count"`
	Relists int             `json:"relists"`
	Op      string          `json:"op"`
	Code    int             `json:"code"`
	Reason  string          `json:"reason"`
	Message string          `json:"message"`
	RetryMs int64           `json:"retry_ms"`
}

func (e event) specValue() string {
	var o struct {
		Spec struct {
			Params map[string]string `json:"params"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(e.Object, &o)
	return o.Spec.Params["step"]
}

// watcher runs is_watch and collects its events.
type watcher struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []event
	stderr strings.Builder
}

func buildDir(t *testing.T) string {
	if d := os.Getenv("IS_BUILD_DIR"); d != "" {
		return d
	}
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "build")
}

func startWatcher(t *testing.T, kubeconfig string, args ...string) *watcher {
	t.Helper()
	bin := filepath.Join(buildDir(t), "is_watch")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: build the project first (%v)", bin, err)
	}
	base := []string{"--kubeconfig", kubeconfig, "--group", irGVR.Group, "--version", irGVR.Version,
		"--resource", irGVR.Resource, "--backoff-max-ms", "2000"}
	w := &watcher{cmd: exec.Command(bin, append(base, args...)...)}
	w.cmd.Stderr = &w.stderr
	// Ends with the test binary even when no cleanup runs.
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("is_watch printed a line that is not JSON: %q", sc.Text())
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- w.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("is_watch exited with %v; stderr: %s", err, w.stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			t.Errorf("is_watch did not stop on SIGTERM")
		}
	})
	return w
}

func (w *watcher) snapshot() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

// waitFor polls until cond holds for the events seen so far.
func (w *watcher) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]event) bool) []event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := w.snapshot()
		if cond(ev) {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events: %s; stderr: %s", what, summarize(ev), w.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func summarize(ev []event) string {
	var b strings.Builder
	for _, e := range ev {
		switch e.Type {
		case "ERROR":
			fmt.Fprintf(&b, "\n  ERROR %s %d %s %s", e.Op, e.Code, e.Reason, e.Message)
		case "SYNCED":
			fmt.Fprintf(&b, "\n  SYNCED count=%d relists=%d", e.Count, e.Relists)
		default:
			fmt.Fprintf(&b, "\n  %s %s step=%s", e.Type, e.Key, e.specValue())
		}
	}
	return b.String()
}

func changes(ev []event) []string {
	var out []string
	for _, e := range ev {
		switch e.Type {
		case "ADDED", "MODIFIED", "DELETED":
			out = append(out, e.Type+" "+e.Key+" "+e.specValue())
		}
	}
	return out
}

func count(ev []event, typ string) int {
	n := 0
	for _, e := range ev {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func newRequest(ns, name, step string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "appstudio.redhat.com/v1alpha1",
		"kind":       "InternalRequest",
		"metadata":   map[string]interface{}{"name": name, "namespace": ns},
		"spec": map[string]interface{}{
			"pipeline": map[string]interface{}{"pipelineRef": map[string]interface{}{
				"resolver": "cluster",
				"params": []interface{}{
					map[string]interface{}{"name": "name", "value": "sign"},
					map[string]interface{}{"name": "kind", "value": "pipeline"},
				},
			}},
			"params": map[string]interface{}{"step": step},
		},
	}}
}

func setStep(t *testing.T, c dynamic.Interface, ns, name, step string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"params":{"step":%q}}}`, step)
	if _, err := c.Resource(irGVR).Namespace(ns).Patch(context.Background(), name, "application/merge-patch+json",
		[]byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, c dynamic.Interface, ns, name, step string) {
	t.Helper()
	if _, err := c.Resource(irGVR).Namespace(ns).Create(context.Background(), newRequest(ns, name, step),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, c dynamic.Interface, ns, name string) {
	t.Helper()
	if err := c.Resource(irGVR).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestHostAgainstRealAPIServers(t *testing.T) {
	clusters := bed.StartMany(t, "remote", "internal")
	remote, internal := clusters[0], clusters[1]
	t.Logf("bed: remote ready in %v, internal ready in %v (started side by side)",
		remote.StartDuration, internal.StartDuration)
	for _, c := range clusters {
		if err := c.InstallCRDs(false); err != nil {
			t.Fatal(err)
		}
	}
	client, err := remote.Dynamic()
	if err != nil {
		t.Fatal(err)
	}
	ns := remote.Namespace

	t.Run("every add, update and delete in order", func(t *testing.T) {
		w := startWatcher(t, remote.AdminKubeconfig, "--namespace", ns)
		w.waitFor(t, "the first list", 20*time.Second, func(ev []event) bool { return count(ev, "SYNCED") == 1 })
		var want []string
		for i := 0; i < 10; i++ {
			name := fmt.Sprintf("order-%02d", i)
			create(t, client, ns, name, "1")
			want = append(want, "ADDED "+ns+"/"+name+" 1")
			setStep(t, client, ns, name, "2")
			want = append(want, "MODIFIED "+ns+"/"+name+" 2")
		}
		for i := 0; i < 10; i += 2 {
			name := fmt.Sprintf("order-%02d", i)
			remove(t, client, ns, name)
			want = append(want, "DELETED "+ns+"/"+name+" 2")
		}
		ev := w.waitFor(t, "every change", 20*time.Second, func(ev []event) bool { return len(changes(ev)) >= len(want) })
		if got := changes(ev); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("events differ\n got: %v\nwant: %v", got, want)
		}
		for i := 1; i < 10; i += 2 {
			remove(t, client, ns, fmt.Sprintf("order-%02d", i))
		}
	})

	t.Run("api server restarted mid-stream loses no event", func(t *testing.T) {
		w := startWatcher(t, remote.AdminKubeconfig, "--namespace", ns)
		w.waitFor(t, "the first list", 20*time.Second, func(ev []event) bool { return count(ev, "SYNCED") == 1 })
		create(t, client, ns, "restart-a", "1")
		w.waitFor(t, "restart-a", 10*time.Second, func(ev []event) bool { return len(changes(ev)) == 1 })
		if err := remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		// These happen while the watcher is still backing off after the
		// broken stream: it must get them by resuming from its last
		// resourceVersion.
		setStep(t, client, ns, "restart-a", "2")
		create(t, client, ns, "restart-b", "1")
		remove(t, client, ns, "restart-a")
		want := []string{
			"ADDED " + ns + "/restart-a 1", "MODIFIED " + ns + "/restart-a 2",
			"ADDED " + ns + "/restart-b 1", "DELETED " + ns + "/restart-a 2",
		}
		// Resuming from the last resourceVersion replays every change. A
		// restarted API server's watch cache may instead start after that
		// version and answer 410; then, as in client-go, a relist takes
		// over: intermediate states of one object may be collapsed, but the
		// cache converges and every deletion is still delivered.
		ev := w.waitFor(t, "the changes after the restart", 40*time.Second, func(ev []event) bool {
			got := changes(ev)
			if len(got) >= len(want) {
				return true
			}
			return relisted(ev) && contains(got, "ADDED "+ns+"/restart-b 1") && hasDeleted(got, ns+"/restart-a")
		})
		time.Sleep(500 * time.Millisecond)
		ev = w.snapshot()
		got := changes(ev)
		if !relisted(ev) {
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("events differ after restart\n got: %v\nwant: %v%s", got, want, summarize(ev))
			}
		} else {
			t.Logf("the restarted API server answered 410; checked convergence after the relist:%s", summarize(ev))
			if got[0] != want[0] || !contains(got, want[2]) || !hasDeleted(got, ns+"/restart-a") {
				t.Fatalf("the cache did not converge after the relist:%s", summarize(ev))
			}
			if n := countPrefix(got, "ADDED "+ns+"/restart-a"); n != 1 {
				t.Errorf("restart-a was added %d times", n)
			}
		}
		remove(t, client, ns, "restart-b")
	})

	t.Run("compaction forces 410 and the cache converges", func(t *testing.T) {
		create(t, client, ns, "gone-a", "1")
		create(t, client, ns, "gone-c", "1")
		w := startWatcher(t, remote.AdminKubeconfig, "--namespace", ns)
		w.waitFor(t, "the first list", 20*time.Second, func(ev []event) bool { return count(ev, "SYNCED") == 1 })
		// Freeze the watcher, change things it will not see, compact them
		// away and restart the API server (whose watch cache would still
		// hold them); the watcher then resumes from a resourceVersion that
		// no longer exists.
		if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		remove(t, client, ns, "gone-a")
		create(t, client, ns, "gone-b", "1")
		setStep(t, client, ns, "gone-c", "2")
		for i := 0; i < 5; i++ {
			setStep(t, client, ns, "gone-c", fmt.Sprintf("%d", 3+i))
		}
		if _, err := remote.Compact(); err != nil {
			t.Fatal(err)
		}
		if err := remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		ev := w.waitFor(t, "a relist", 40*time.Second, func(ev []event) bool {
			for _, e := range ev {
				if e.Type == "SYNCED" && e.Relists >= 1 {
					return true
				}
			}
			return false
		})
		got := changes(ev)
		tail := strings.Join(got, "\n")
		for _, want := range []string{"DELETED " + ns + "/gone-a 1", "ADDED " + ns + "/gone-b 1", ns + "/gone-c 7"} {
			if !strings.Contains(tail, want) {
				t.Errorf("after the relist the watcher missed %q; events:%s", want, summarize(ev))
			}
		}
		expired := false
		for _, e := range ev {
			if e.Type == "ERROR" && e.Code == 410 {
				expired = true
			}
		}
		if !expired {
			t.Errorf("no 410 was reported; events:%s", summarize(ev))
		}
		remove(t, client, ns, "gone-b")
		remove(t, client, ns, "gone-c")
	})

	t.Run("restricted identity gets 403 and retries with backoff", func(t *testing.T) {
		w := startWatcher(t, remote.RestrictedKubeconfig, "--namespace", ns)
		ev := w.waitFor(t, "three failed lists", 30*time.Second, func(ev []event) bool { return count(ev, "ERROR") >= 3 })
		var errs []event
		for _, e := range ev {
			if e.Type == "ERROR" {
				errs = append(errs, e)
			}
		}
		for i, e := range errs[:3] {
			if e.Op != "list" || e.Code != 403 || e.Reason != "Forbidden" {
				t.Errorf("error %d: want list 403 Forbidden, got %s %d %s", i, e.Op, e.Code, e.Reason)
			}
			if !strings.Contains(e.Message, `User "restricted" cannot list resource "internalrequests"`) {
				t.Errorf("error %d: the message does not name the user and the resource: %s", i, e.Message)
			}
		}
		// Jittered exponential backoff: 800 ms base, doubling, up to +100%.
		if errs[0].RetryMs < 800 || errs[1].RetryMs < 1600 || errs[2].RetryMs < 2000 {
			t.Errorf("backoff does not grow: %d, %d, %d ms", errs[0].RetryMs, errs[1].RetryMs, errs[2].RetryMs)
		}
	})

	t.Run("a 401 makes the host re-read a rotated token file", func(t *testing.T) {
		csv, err := os.ReadFile(filepath.Join(remote.Dir, "pki", "tokens.csv"))
		if err != nil {
			t.Fatal(err)
		}
		good := strings.SplitN(string(csv), ",", 2)[0]
		dir := t.TempDir()
		tokenFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte("expired-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ca, _ := os.ReadFile(remote.CACert)
		cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: remote
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: rotating
  user:
    tokenFile: token
contexts:
- name: remote
  context: {cluster: remote, user: rotating}
current-context: remote
`, remote.APIServerURL, b64(ca))
		path := filepath.Join(dir, "token.kubeconfig")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		w := startWatcher(t, path, "--namespace", ns)
		ev := w.waitFor(t, "a 401", 20*time.Second, func(ev []event) bool { return count(ev, "ERROR") >= 1 })
		if e := ev[0]; e.Code != 401 || e.Reason != "Unauthorized" {
			t.Fatalf("want 401 Unauthorized, got %d %s %q", e.Code, e.Reason, e.Message)
		}
		// The token rotates, as a bound service-account token does: the
		// next 401 makes the host read the file again and succeed.
		if err := os.WriteFile(tokenFile, []byte(good+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, "a list with the rotated token", 30*time.Second, func(ev []event) bool { return count(ev, "SYNCED") == 1 })
	})

	t.Run("tls-server-name is the name the certificate is checked against", func(t *testing.T) {
		cfg, err := os.ReadFile(remote.AdminKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		withName := func(name string) string {
			out := strings.Replace(string(cfg), "    server: "+remote.APIServerURL,
				"    server: "+remote.APIServerURL+"\n    tls-server-name: "+name, 1)
			if out == string(cfg) {
				t.Fatalf("could not add tls-server-name to %s", remote.AdminKubeconfig)
			}
			path := filepath.Join(t.TempDir(), name+".kubeconfig")
			if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		// The serving certificate names localhost and 127.0.0.1, not this.
		w := startWatcher(t, withName("api.internal.example"), "--namespace", ns)
		ev := w.waitFor(t, "a TLS error", 20*time.Second, func(ev []event) bool { return count(ev, "ERROR") >= 1 })
		if e := ev[0]; e.Reason != "TLSError" || !strings.Contains(e.Message, "api.internal.example") {
			t.Fatalf("want a TLSError naming api.internal.example, got %d %s %q", e.Code, e.Reason, e.Message)
		}
		w = startWatcher(t, withName("localhost"), "--namespace", ns)
		w.waitFor(t, "a list through tls-server-name localhost", 20*time.Second,
			func(ev []event) bool { return count(ev, "SYNCED") == 1 })
	})

	t.Run("wrong CA fails with a clear TLS error", func(t *testing.T) {
		// The remote server's certificate checked against the internal
		// cluster's CA.
		cfg, err := os.ReadFile(remote.AdminKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		remoteCA, _ := os.ReadFile(remote.CACert)
		internalCA, _ := os.ReadFile(internal.CACert)
		replaced := strings.Replace(string(cfg), b64(remoteCA), b64(internalCA), 1)
		if replaced == string(cfg) {
			t.Fatalf("could not swap the CA in %s", remote.AdminKubeconfig)
		}
		path := filepath.Join(t.TempDir(), "wrong-ca.kubeconfig")
		if err := os.WriteFile(path, []byte(replaced), 0o600); err != nil {
			t.Fatal(err)
		}
		w := startWatcher(t, path, "--namespace", ns)
		ev := w.waitFor(t, "a TLS error", 20*time.Second, func(ev []event) bool { return count(ev, "ERROR") >= 1 })
		e := ev[0]
		if e.Code != 0 || e.Reason != "TLSError" || !strings.HasPrefix(e.Message, "TLS: ") {
			t.Fatalf("want a TLSError with a message starting \"TLS: \", got %d %s %q", e.Code, e.Reason, e.Message)
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func relisted(ev []event) bool {
	for _, e := range ev {
		if e.Type == "SYNCED" && e.Relists > 0 {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasDeleted(list []string, key string) bool {
	return countPrefix(list, "DELETED "+key+" ") > 0
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, x := range list {
		if strings.HasPrefix(x, prefix) {
			n++
		}
	}
	return n
}
