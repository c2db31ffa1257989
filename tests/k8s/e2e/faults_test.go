package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"internal-services/tests/k8s/bed"
)

// The randomized fault run: many requests of every kind while the
// controller is SIGKILLed (also right after it created a PipelineRun, before
// it wrote the request's status), both API servers restart, the remote one
// is away for a while, etcd is compacted under every watch, the remote token
// rotates and a leader fails over. The API servers' audit logs then prove
// that every allowed request got exactly one PipelineRun, ever.
//
// IS_FAULTS_FULL=1 runs the full size (1000 requests, 22 SIGKILLs, a 60 s
// outage); IS_FAULTS_SEED replays a run.

// faultKind names one kind of fault.
type faultKind string

const (
	faultKill            faultKind = "sigkill"
	faultKillAtCreate    faultKind = "sigkill-after-pipelinerun-create"
	faultRemoteRestart   faultKind = "remote-apiserver-restart"
	faultInternalRestart faultKind = "internal-apiserver-restart"
	faultRemoteOutage    faultKind = "remote-unreachable"
	faultCompact         faultKind = "etcd-compaction-410"
	faultRotate          faultKind = "remote-token-rotation"
	faultFailover        faultKind = "leader-failover"
)

type faultPlan struct {
	requests int
	window   time.Duration // requests are created over this long
	outage   time.Duration
	faults   map[faultKind]int
}

func planFaults() faultPlan {
	if os.Getenv("IS_FAULTS_FULL") != "" {
		return faultPlan{requests: 1000, window: 8 * time.Minute, outage: 60 * time.Second, faults: map[faultKind]int{
			faultKill: 12, faultKillAtCreate: 10, faultRemoteRestart: 3, faultInternalRestart: 3,
			faultRemoteOutage: 2, faultCompact: 3, faultRotate: 3, faultFailover: 3}}
	}
	return faultPlan{requests: 200, window: 100 * time.Second, outage: 10 * time.Second, faults: map[faultKind]int{
		faultKill: 3, faultKillAtCreate: 3, faultRemoteRestart: 1, faultInternalRestart: 1,
		faultRemoteOutage: 1, faultCompact: 1, faultRotate: 1, faultFailover: 1}}
}

// reqKind is what a request asks for and how it must end.
type reqKind struct {
	name, ns, pipeline string
	status, reason     string // the final Succeeded condition
	runs               int    // PipelineRuns it must get, ever
	deleted            bool   // deleted by its owner once Running
	weight             int
}

var reqKinds = []reqKind{
	{name: "ok", ns: "tenant-a", pipeline: "sign-release", status: "True", reason: "Succeeded", runs: 1, weight: 40},
	{name: "slow", ns: "tenant-a", pipeline: "slow-release", status: "True", reason: "Succeeded", runs: 1, weight: 15},
	{name: "fail", ns: "tenant-a", pipeline: "always-fails", status: "False", reason: "Failed", runs: 1, weight: 15},
	{name: "reject", ns: "tenant-b", pipeline: "sign-release", status: "False", reason: "Rejected", runs: 0, weight: 20},
	{name: "delete", ns: "tenant-a", pipeline: "never-ends", runs: 1, deleted: true, weight: 10},
}

type tracked struct {
	name, ns string
	kind     *reqKind
	uid      string // set once created
	deleted  bool
}

// pipelineRunName is names.pipelinerun (lua/internal_services/names.lua)
// for the plain names this test gives its requests.
func pipelineRunName(ns, name, uid string) string {
	h := fnv.New64a()
	h.Write([]byte(ns + "/" + name + "/" + uid))
	prefix := regexp.MustCompile(`-+`).ReplaceAllString(regexp.MustCompile(`[^a-z0-9-]`).ReplaceAllString(strings.ToLower(name), "-"), "-")
	prefix = strings.Trim(prefix, "-")
	if len(prefix) > 43 {
		prefix = strings.TrimRight(prefix[:43], "-")
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if prefix == "" {
		return "ir-" + sum
	}
	return "ir-" + prefix + "-" + sum
}

// fleet is the controller as the fault run sees it: one process without
// leader election, or, during a failover, two replicas with it.
type fleet struct {
	e        *env
	mu       sync.Mutex
	current  *controller
	replicas int
}

func (f *fleet) startSingle() {
	c := f.e.startController("faults")
	f.mu.Lock()
	f.current = c
	f.mu.Unlock()
}

func (f *fleet) get() *controller {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

// rotatingToken makes the controller's remote identity a bearer token read
// from a file, which the test can rotate as a bound ServiceAccount token
// rotates: the new token is written to the file, then the API server stops
// accepting the old one (here: its static token file changes and it
// restarts), and the controller re-reads the file on its 401.
type rotatingToken struct {
	e          *env
	csv, file  string
	current    string
	kubeconfig string
}

func newRotatingToken(e *env) *rotatingToken {
	r := &rotatingToken{e: e, csv: filepath.Join(e.remote.Dir, "pki", "tokens.csv")}
	dir := e.t.TempDir()
	r.file = filepath.Join(dir, "token")
	r.current = randomToken()
	r.writeFile()
	r.swap("")
	ca, err := os.ReadFile(e.remote.CACert)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: remote
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    tokenFile: token
contexts:
- name: remote
  context: {cluster: remote, user: %s}
current-context: remote
`, e.remote.APIServerURL, base64.StdEncoding.EncodeToString(ca), remoteUser, remoteUser)
	r.kubeconfig = filepath.Join(dir, "remote.kubeconfig")
	if err := os.WriteFile(r.kubeconfig, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func randomToken() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(rand.Intn(256))
	}
	return hex.EncodeToString(b)
}

func (r *rotatingToken) writeFile() {
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.current+"\n"), 0o600); err != nil {
		r.e.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		r.e.t.Fatal(err)
	}
}

// swap makes the API server accept r.current instead of old, and restarts it.
func (r *rotatingToken) swap(old string) {
	b, err := os.ReadFile(r.csv)
	if err != nil {
		r.e.t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if old != "" && strings.HasPrefix(l, old+",") {
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, r.current+","+remoteUser+","+remoteUser)
	if err := os.WriteFile(r.csv, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		r.e.t.Fatal(err)
	}
	if err := r.e.remote.RestartAPIServer(); err != nil {
		r.e.t.Fatal(err)
	}
}

func (r *rotatingToken) rotate() {
	old := r.current
	r.current = randomToken()
	r.writeFile()
	r.swap(old)
}

// readAudit calls fn with every entry of c's audit log, at every stage.
func readAudit(t *testing.T, c *bed.Cluster, fn func(*auditEntry)) {
	t.Helper()
	f, err := os.Open(c.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEntry
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			fn(&ev)
		}
	}
}

func TestFaults(t *testing.T) {
	plan := planFaults()
	seed := time.Now().UnixNano()
	if s := os.Getenv("IS_FAULTS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("IS_FAULTS_SEED=%q: %v", s, err)
		}
	}
	fmt.Printf("fault run: seed %d (IS_FAULTS_SEED=%d replays it), %d requests\n", seed, seed, plan.requests)
	rng := rand.New(rand.NewSource(seed))
	started := time.Now()

	e := setup(t)
	e.pipeline("slow-release", "succeed", "6s", `[{"name":"signature","value":"slow:$(params.component)"}]`)
	token := newRotatingToken(e)
	e.remoteKubeconfig = token.kubeconfig
	fl := &fleet{e: e}
	fl.startSingle()

	// The requests, in a seeded order of kinds.
	var total int
	for _, k := range reqKinds {
		total += k.weight
	}
	reqs := make([]*tracked, plan.requests)
	for i := range reqs {
		n := rng.Intn(total)
		k := &reqKinds[0]
		for j := range reqKinds {
			if n < reqKinds[j].weight {
				k = &reqKinds[j]
				break
			}
			n -= reqKinds[j].weight
		}
		reqs[i] = &tracked{name: fmt.Sprintf("f%04d-%s", i, k.name), ns: k.ns, kind: k}
	}
	var mu sync.Mutex // guards tracked.uid and tracked.deleted
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 16)

	// Creator: the requests at an even pace, each batch before the next
	// fault (faults take their own time: a restart is seconds), so that
	// every fault finds requests in every state; a create retries through
	// outages, as any client would.
	created := make(chan struct{})
	var quota atomic.Int64
	go func() {
		defer close(created)
		gap := plan.window / time.Duration(plan.requests)
		for i, r := range reqs {
			for int64(i) >= quota.Load() && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			obj := request{ns: r.ns, name: r.name, refParams: clusterRef(r.kind.pipeline),
				params: map[string]string{"component": r.name}}.object()
			deadline := time.Now().Add(3 * time.Minute)
			for {
				out, err := e.remoteC.Resource(irGVR).Namespace(r.ns).Create(ctx, obj, metav1.CreateOptions{})
				if apierrors.IsAlreadyExists(err) {
					out, err = e.remoteC.Resource(irGVR).Namespace(r.ns).Get(ctx, r.name, metav1.GetOptions{})
				}
				if err == nil {
					mu.Lock()
					r.uid = string(out.GetUID())
					mu.Unlock()
					break
				}
				if ctx.Err() != nil {
					return
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("creating %s/%s: %v", r.ns, r.name, err)
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
			time.Sleep(gap)
		}
	}()

	// Deleter: a request of kind "delete" is deleted once it runs.
	go func() {
		for ctx.Err() == nil {
			time.Sleep(time.Second)
			list, err := e.remoteC.Resource(irGVR).Namespace("tenant-a").List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			running := map[string]bool{}
			for i := range list.Items {
				if st, reason, _ := condition(&list.Items[i]); st == "Unknown" && reason == "Running" {
					running[list.Items[i].GetName()] = true
				}
			}
			for _, r := range reqs {
				mu.Lock()
				due := r.kind.deleted && !r.deleted && r.uid != "" && running[r.name]
				mu.Unlock()
				if !due {
					continue
				}
				err := e.remoteC.Resource(irGVR).Namespace(r.ns).Delete(ctx, r.name, metav1.DeleteOptions{})
				if err == nil || apierrors.IsNotFound(err) {
					mu.Lock()
					r.deleted = true
					mu.Unlock()
				}
			}
		}
	}()

	// SIGKILL right after a PipelineRun is created: the watch's ADDED
	// event kills the controller from the watch goroutine, before it has
	// (most of the time) written the request's status.
	var armMu sync.Mutex
	var armed *controller
	var killedAt chan *unstructured.Unstructured
	e.prSeen.hook(func(pr *unstructured.Unstructured) {
		armMu.Lock()
		defer armMu.Unlock()
		if armed == nil {
			return
		}
		_ = armed.cmd.Process.Signal(syscall.SIGKILL)
		armed = nil
		killedAt <- pr
	})
	defer e.prSeen.hook(nil)

	var schedule []faultKind
	for k, n := range plan.faults {
		for i := 0; i < n; i++ {
			schedule = append(schedule, k)
		}
	}
	sort.Slice(schedule, func(i, j int) bool { return schedule[i] < schedule[j] })
	rng.Shuffle(len(schedule), func(i, j int) { schedule[i], schedule[j] = schedule[j], schedule[i] })
	done := map[faultKind]int{}
	beforeStatus := 0
	meanGap := plan.window / time.Duration(len(schedule)+1)
	for j, f := range schedule {
		quota.Store(int64(plan.requests * (j + 1) / (len(schedule) + 1)))
		time.Sleep(meanGap/2 + time.Duration(rng.Int63n(int64(meanGap))))
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		t0 := time.Now()
		switch f {
		case faultKill:
			fl.get().kill()
			time.Sleep(time.Duration(rng.Intn(1000)) * time.Millisecond)
			fl.startSingle()
		case faultKillAtCreate:
			killedAt = make(chan *unstructured.Unstructured, 1)
			c := fl.get()
			armMu.Lock()
			armed = c
			armMu.Unlock()
			// The next batch of requests brings the PipelineRun to kill on.
			quota.Store(int64(plan.requests * (j + 2) / (len(schedule) + 1)))
			select {
			case pr := <-killedAt:
				<-c.done
				l := pr.GetLabels()
				ir, err := e.remoteC.Resource(irGVR).Namespace(l["internal-services.appstudio.openshift.io/namespace"]).Get(
					ctx, l["internal-services.appstudio.openshift.io/name"], metav1.GetOptions{})
				if err == nil {
					if v, _, _ := unstructured.NestedString(ir.Object, "status", "pipelineRun"); v == "" {
						beforeStatus++
					}
				}
			case <-time.After(30 * time.Second):
				armMu.Lock()
				armed = nil
				armMu.Unlock()
				t.Logf("no PipelineRun was created within 30 s to kill the controller after; killing it now")
				c.kill()
			}
			fl.startSingle()
		case faultRemoteRestart:
			if err := e.remote.RestartAPIServer(); err != nil {
				t.Fatal(err)
			}
		case faultInternalRestart:
			if err := e.internal.RestartAPIServer(); err != nil {
				t.Fatal(err)
			}
		case faultRemoteOutage:
			if err := e.remote.StopAPIServer(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(plan.outage)
			if err := e.remote.StartAPIServer(); err != nil {
				t.Fatal(err)
			}
		case faultCompact:
			// Compaction removes every resourceVersion a watch could
			// resume from, and the restart empties the watch cache that
			// would still serve them: every watch resumes into 410 Gone.
			for _, c := range []*bed.Cluster{e.remote, e.internal} {
				if _, err := c.Compact(); err != nil {
					t.Fatal(err)
				}
				if err := c.RestartAPIServer(); err != nil {
					t.Fatal(err)
				}
			}
		case faultRotate:
			token.rotate()
		case faultFailover:
			fl.failover(t, rng)
		}
		done[f]++
		t.Logf("%6.1fs fault %s (%v)", time.Since(started).Seconds(), f, time.Since(t0).Round(100*time.Millisecond))
	}
	quota.Store(int64(plan.requests))
	<-created
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	// Drain: every request ends as decided for it.
	drainStart := time.Now()
	final := map[string]*unstructured.Unstructured{}
	for {
		pending := 0
		for _, r := range reqs {
			if _, ok := final[r.name]; ok {
				continue
			}
			obj, err := e.remoteC.Resource(irGVR).Namespace(r.ns).Get(ctx, r.name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) && r.kind.deleted:
				final[r.name] = nil
			case err == nil && !r.kind.deleted && finished(obj) && len(obj.GetFinalizers()) == 0:
				final[r.name] = obj
			default:
				pending++
			}
		}
		if pending == 0 || time.Since(drainStart) > 5*time.Minute {
			break
		}
		time.Sleep(2 * time.Second)
	}
	// No PipelineRun is left behind (debug is off).
	var leftovers []string
	for deadline := time.Now().Add(2 * time.Minute); ; {
		list, err := e.internalC.Resource(prGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{LabelSelector: uidLabel})
		if err != nil {
			t.Fatal(err)
		}
		leftovers = leftovers[:0]
		for _, pr := range list.Items {
			leftovers = append(leftovers, pr.GetName())
		}
		if len(leftovers) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	fl.get().stop(t)
	cancel()

	// The audit logs: PipelineRuns created (201) by the controller, by name.
	internalUser := "system:serviceaccount:internal-services:internal-services"
	creates, deletes := map[string]int{}, map[string]int{}
	readAudit(t, e.internal, func(ev *auditEntry) {
		if ev.Stage != "ResponseComplete" || ev.ObjectRef.Resource != "pipelineruns" ||
			ev.ObjectRef.Namespace != controllerNS || ev.User.Username != internalUser {
			return
		}
		switch {
		case ev.Verb == "create" && ev.ResponseStatus.Code == 201:
			if ev.ObjectRef.Name == "" {
				t.Fatalf("the audit log names no PipelineRun on a create")
			}
			creates[ev.ObjectRef.Name]++
		case ev.Verb == "delete" && ev.ResponseStatus.Code == 200:
			deletes[ev.ObjectRef.Name]++
		}
	})
	unauthorized := 0
	// A failed authentication is audited at ResponseStarted, with no user.
	readAudit(t, e.remote, func(ev *auditEntry) {
		if ev.ResponseStatus.Code == 401 {
			unauthorized++
		}
	})

	expected := map[string]bool{}
	duplicates, lost, wrong := 0, 0, 0
	for _, r := range reqs {
		if r.uid == "" {
			t.Errorf("%s/%s was never created", r.ns, r.name)
			continue
		}
		pr := pipelineRunName(r.ns, r.name, r.uid)
		expected[pr] = true
		n := creates[pr]
		switch {
		case n > r.kind.runs:
			duplicates++
			t.Errorf("%s/%s (%s): %d PipelineRuns created, want %d", r.ns, r.name, r.kind.name, n, r.kind.runs)
		case n < r.kind.runs:
			lost++
			t.Errorf("%s/%s (%s): no PipelineRun was ever created", r.ns, r.name, r.kind.name)
		}
		obj, ok := final[r.name]
		switch {
		case !ok:
			lost++
			cur := e.get(r.ns, r.name)
			st, reason, msg := condition(cur)
			var fin []string
			if cur != nil {
				fin = cur.GetFinalizers()
			}
			t.Errorf("%s/%s (%s): did not end as decided: condition %s/%s %q, finalizers %v", r.ns, r.name, r.kind.name, st, reason, msg, fin)
		case obj != nil:
			st, reason, msg := condition(obj)
			if st != r.kind.status || reason != r.kind.reason {
				wrong++
				t.Errorf("%s/%s (%s): ended %s/%s %q, want %s/%s", r.ns, r.name, r.kind.name, st, reason, msg, r.kind.status, r.kind.reason)
			}
			if r.kind.reason == "Succeeded" {
				results, _, _ := unstructured.NestedStringMap(obj.Object, "status", "results")
				want := "signed:" + r.name
				if r.kind.pipeline == "slow-release" {
					want = "slow:" + r.name
				}
				if results["signature"] != want {
					wrong++
					t.Errorf("%s/%s: results %v, want signature %q", r.ns, r.name, results, want)
				}
			}
		}
	}
	for name := range creates {
		if !expected[name] {
			t.Errorf("a PipelineRun %s was created for no request of this run", name)
		}
	}
	for name := range creates {
		if deletes[name] == 0 && !contains(leftovers, name) {
			t.Errorf("PipelineRun %s: created, never deleted by the controller, and not on the cluster", name)
		}
	}
	if len(leftovers) > 0 {
		t.Errorf("PipelineRuns left behind: %v", leftovers)
	}
	expired := 0
	for _, p := range []string{"faults", "faults-a", "faults-b"} {
		b, _ := os.ReadFile(filepath.Join(e.logDir, p+".log"))
		expired += strings.Count(string(b), "watch expired, relisting")
	}
	if done[faultCompact] > 0 && expired == 0 {
		t.Errorf("compaction: no watch of the controller ever got 410 Gone")
	}
	if done[faultRotate] > 0 && unauthorized == 0 {
		t.Errorf("token rotation: the remote API server never answered 401, so nothing was rotated")
	}

	counts := map[string]int{}
	for _, r := range reqs {
		counts[r.kind.name]++
	}
	var faults []string
	for _, k := range []faultKind{faultKill, faultKillAtCreate, faultRemoteRestart, faultInternalRestart,
		faultRemoteOutage, faultCompact, faultRotate, faultFailover} {
		faults = append(faults, fmt.Sprintf("%s=%d", k, done[k]))
	}
	runs := 0
	for _, n := range creates {
		runs += n
	}
	fmt.Printf("fault run: seed %d, %v\n", seed, time.Since(started).Round(time.Second))
	fmt.Printf("  requests %d (ok %d, slow %d, fail %d, reject %d, delete %d); PipelineRuns created %d\n",
		len(reqs), counts["ok"], counts["slow"], counts["fail"], counts["reject"], counts["delete"], runs)
	fmt.Printf("  faults: %s\n", strings.Join(faults, " "))
	fmt.Printf("  SIGKILLs %d (of which %d landed between a PipelineRun's create and the request's status)\n",
		done[faultKill]+done[faultKillAtCreate]+done[faultFailover], beforeStatus)
	fmt.Printf("  watches expired (410) %d, remote 401s %d\n", expired, unauthorized)
	fmt.Printf("  duplicates %d, lost %d, wrong status %d, leftovers %d\n", duplicates, lost, wrong, len(leftovers))
}

// failover runs two replicas with leader election, SIGKILLs the leader,
// waits for the standby to take over, then goes back to one process.
func (f *fleet) failover(t *testing.T, rng *rand.Rand) {
	t.Helper()
	f.get().stop(t)
	f.replicas++
	id := fmt.Sprintf("faults-leader-%d", f.replicas)
	type replica struct {
		c    *controller
		port int
	}
	var rs []replica
	for _, name := range []string{"faults-a", "faults-b"} {
		port := freePort(t)
		c := f.e.startController(name, "--leader-elect", "--leader-election-id", id,
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port))
		rs = append(rs, replica{c, port})
	}
	leader := func() int {
		for i, r := range rs {
			if metric(r.port, "internal_services_leader") == 1 {
				return i
			}
		}
		return -1
	}
	deadline := time.Now().Add(30 * time.Second)
	for leader() < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no replica leads after 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Duration(1000+rng.Intn(3000)) * time.Millisecond)
	first := leader()
	rs[first].c.kill()
	other := rs[1-first]
	waitMetric(t, other.port, "internal_services_leader", 1, 45*time.Second)
	f.mu.Lock()
	f.current = other.c
	f.mu.Unlock()
	time.Sleep(time.Duration(1000+rng.Intn(2000)) * time.Millisecond)
	other.c.stop(t)
	f.startSingle()
}
