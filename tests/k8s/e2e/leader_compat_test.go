package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
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
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var leaseGVR = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// The existing controller's Lease, which ours takes by default.
const goLease = "b548bb9d.redhat.com"

// goElector is one tests/k8s/cmd/go-elector process: client-go's
// leaderelection, as the existing Go controller runs it.
type goElector struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func (e *env) startGoElector(bin, identity string, release bool) *goElector {
	e.t.Helper()
	cmd := exec.Command(bin, "--kubeconfig", e.internal.AdminKubeconfig, "--namespace", controllerNS,
		"--name", goLease, "--identity", identity, fmt.Sprintf("--release-on-cancel=%t", release))
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.SysProcAttr = dieWithTest()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	g := &goElector{t: e.t, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			g.mu.Lock()
			g.lines = append(g.lines, sc.Text())
			g.mu.Unlock()
		}
		_ = cmd.Wait()
		close(g.done)
	}()
	e.t.Cleanup(g.kill)
	return g
}

func (g *goElector) said(line string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (g *goElector) wait(line string, timeout time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for !g.said(line) {
		if time.Now().After(deadline) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.t.Fatalf("client-go elector did not say %q within %v; it said %q", line, timeout, g.lines)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *goElector) kill() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

func (g *goElector) term() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		g.t.Errorf("client-go elector did not stop on SIGTERM")
		g.kill()
	}
}

func (e *env) lease() map[string]any {
	e.t.Helper()
	l, err := e.internalC.Resource(leaseGVR).Namespace(controllerNS).Get(context.Background(), goLease, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(l.Object, "spec")
	return spec
}

var microTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// An old pod (client-go's elector on the existing controller's Lease) and
// ours never lead at once: each blocks the other until the Lease is
// released or expires, and each reads the Lease the other wrote.
func TestLeaderElectionWithClientGo(t *testing.T) {
	e := setup(t)
	bin := filepath.Join(t.TempDir(), "go-elector")
	build := exec.Command("go", "build", "-o", bin, "./cmd/go-elector")
	build.Dir = filepath.Join(e.root, "tests", "k8s")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building go-elector: %v\n%s", err, out)
	}
	// No --leader-election-id: the default must be the existing one. The
	// probes listen on IPv6 forms, as a pod spec may give them.
	ours := func(name string) (*controller, int) {
		port := freePort(t)
		health := freePort(t)
		c := e.startController(name, "--leader-elect",
			"--metrics-bind-address", fmt.Sprintf("[::]:%d", port),
			fmt.Sprintf("-health-probe-bind-address=[::1]:%d", health))
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Get(fmt.Sprintf("http://[::1]:%d/healthz", health))
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no /healthz on [::1]:%d: %v\n%s", name, health, err, c.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return c, port
	}
	const leader = "internal_services_leader"

	// A client-go leader blocks ours until its Lease expires.
	g1 := e.startGoElector(bin, "go-pod-1", false)
	g1.wait("leading", 30*time.Second)
	c1, p1 := ours("compat-1")
	time.Sleep(6 * time.Second)
	if v := metric(p1, leader); v != 0 {
		t.Fatalf("ours leads while client-go holds the Lease (leader gauge %v)", v)
	}
	before := e.lease()
	if before["holderIdentity"] != "go-pod-1" {
		t.Fatalf("the Lease is held by %v, want go-pod-1", before["holderIdentity"])
	}
	g1.kill()
	killed := time.Now()
	waitMetric(t, p1, leader, 1, 30*time.Second)
	if waited := time.Since(killed); waited < 10*time.Second {
		t.Errorf("ours took a live Lease: it led %v after the client-go leader died", waited)
	}
	spec := e.lease()
	ourID, _ := spec["holderIdentity"].(string)
	if ourID == "" || ourID == "go-pod-1" {
		t.Fatalf("the Lease is held by %q after ours took it", ourID)
	}
	if spec["leaseDurationSeconds"] != int64(15) {
		t.Errorf("leaseDurationSeconds %v, want 15", spec["leaseDurationSeconds"])
	}
	if spec["leaseTransitions"] != before["leaseTransitions"].(int64)+1 {
		t.Errorf("leaseTransitions %v after %v, want one more", spec["leaseTransitions"], before["leaseTransitions"])
	}
	for _, f := range []string{"acquireTime", "renewTime"} {
		if s, _ := spec[f].(string); !microTime.MatchString(s) {
			t.Errorf("%s %q is not a MicroTime", f, s)
		}
	}
	e.create(request{ns: "tenant-a", name: "compat-led", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "compat-led", "success", 60*time.Second, hasCondition("True", "Succeeded"), c1)

	// Ours blocks a client-go candidate, which sees it as the leader, until
	// it releases the Lease on SIGTERM.
	g2 := e.startGoElector(bin, "go-pod-2", true)
	g2.wait("leader "+ourID, 15*time.Second)
	time.Sleep(6 * time.Second)
	if g2.said("leading") {
		t.Fatal("client-go leads while ours holds the Lease")
	}
	c1.stop(t)
	released := time.Now()
	g2.wait("leading", 8*time.Second)
	t.Logf("client-go led %v after ours released the Lease", time.Since(released).Round(100*time.Millisecond))

	// A client-go leader that releases its Lease hands over at once.
	c2, p2 := ours("compat-2")
	time.Sleep(6 * time.Second)
	if v := metric(p2, leader); v != 0 {
		t.Fatalf("ours leads while client-go holds the Lease (leader gauge %v)", v)
	}
	g2.term()
	released = time.Now()
	waitMetric(t, p2, leader, 1, 8*time.Second)
	t.Logf("ours led %v after client-go released the Lease", time.Since(released).Round(100*time.Millisecond))
	if h := e.lease()["holderIdentity"]; h == "" || h == "go-pod-2" {
		t.Fatalf("the Lease is held by %q", h)
	}
	ourID, _ = e.lease()["holderIdentity"].(string)

	// Ours killed without releasing: client-go waits for the Lease to expire.
	g3 := e.startGoElector(bin, "go-pod-3", false)
	g3.wait("leader "+ourID, 15*time.Second)
	c2.kill()
	killed = time.Now()
	g3.wait("leading", 30*time.Second)
	if waited := time.Since(killed); waited < 10*time.Second {
		t.Errorf("client-go took a live Lease: it led %v after ours died", waited)
	}
	if !strings.Contains(c2.log(), "became the leader") {
		t.Errorf("ours never logged leading:\n%s", c2.log())
	}
}
