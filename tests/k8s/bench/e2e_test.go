//go:build bench

// Package bench measures the controller end to end on the two-cluster bed,
// against two floors measured in the same run: requests created on remote,
// PipelineRuns completed on internal the moment they appear, by a completer
// in this process that writes each run's status as Tekton would (Tekton's
// own pods, resolution and reconcile are left out, so what is measured is
// the controller and the API servers). Run by bench/e2e (bench/run), never
// by the test command: the build tag keeps it out of `go test ./...`.
//
// Every figure comes from this process's watches (timestamps of the events
// it receives), the API servers' own apiserver_request_total counters and
// the controller's /proc entries. Sizes come from the environment (see
// bench/README.md); each phase stops by itself at its deadline.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"internal-services/tests/k8s/bed"
)

var (
	irGVR    = schema.GroupVersionResource{Group: "appstudio.redhat.com", Version: "v1alpha1", Resource: "internalrequests"}
	prGVR    = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	eventGVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

const (
	controllerNS = "internal-services"
	tenantNS     = "bench"
	prefix       = "internal-services.appstudio.openshift.io/"
	finalizer    = prefix + "pipelinerun-cleanup"
	nameLabel    = prefix + "name"
	nsLabel      = prefix + "namespace"
	workers      = 50 // the controller's default max_concurrent_reconciles
	creators     = 32 // concurrent creates of a burst
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func envList(name, def string) []int {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// fast is a REST config without client-go's default 5 QPS limit.
func fast(c *bed.Cluster, t *testing.T) *rest.Config {
	cfg, err := c.RESTConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1e5, 1e5
	return cfg
}

// recorder: when this process's watches saw each step of each request.
type recorder struct {
	mu              sync.Mutex
	irAdded, final  map[string]time.Time
	prAdded, prDone map[string]time.Time
	finals          int
	onPR            func(pr *unstructured.Unstructured)
}

func newRecorder() *recorder {
	return &recorder{irAdded: map[string]time.Time{}, final: map[string]time.Time{},
		prAdded: map[string]time.Time{}, prDone: map[string]time.Time{}}
}

func succeeded(obj *unstructured.Unstructured) (status, reason string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Succeeded" {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			return s, r
		}
	}
	return "", ""
}

func finished(obj *unstructured.Unstructured) bool {
	s, r := succeeded(obj)
	return (s == "True" || s == "False") && r != "Running"
}

func prDone(obj *unstructured.Unstructured) bool {
	s, _ := succeeded(obj)
	return s == "True" || s == "False"
}

// watchForever follows a resource from now on, re-watching from the last
// version when the server ends a watch, until ctx ends.
func watchForever(ctx context.Context, t *testing.T, c dynamic.ResourceInterface, handle func(watch.EventType, *unstructured.Unstructured, time.Time)) {
	list, err := c.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	rv := list.GetResourceVersion()
	ready := make(chan struct{})
	go func() {
		first := true
		for ctx.Err() == nil {
			w, err := c.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if first {
				close(ready)
				first = false
			}
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				now := time.Now()
				obj, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = obj.GetResourceVersion()
				if ev.Type == watch.Bookmark {
					continue
				}
				handle(ev.Type, obj, now)
			}
			w.Stop()
		}
	}()
	<-ready
}

func (r *recorder) watch(ctx context.Context, t *testing.T, remote, internal dynamic.Interface) {
	watchForever(ctx, t, remote.Resource(irGVR).Namespace(tenantNS), func(typ watch.EventType, obj *unstructured.Unstructured, now time.Time) {
		name := obj.GetName()
		r.mu.Lock()
		defer r.mu.Unlock()
		if typ == watch.Added {
			if _, seen := r.irAdded[name]; !seen {
				r.irAdded[name] = now
			}
		}
		if typ != watch.Deleted && finished(obj) {
			if _, seen := r.final[name]; !seen {
				r.final[name] = now
				r.finals++
			}
		}
	})
	watchForever(ctx, t, internal.Resource(prGVR).Namespace(controllerNS), func(typ watch.EventType, obj *unstructured.Unstructured, now time.Time) {
		req := obj.GetLabels()[nameLabel]
		if req == "" {
			return
		}
		r.mu.Lock()
		_, seen := r.prAdded[req]
		if typ == watch.Added && !seen {
			r.prAdded[req] = now
		}
		_, doneSeen := r.prDone[req]
		done := typ != watch.Deleted && prDone(obj)
		if done && !doneSeen {
			r.prDone[req] = now
		}
		onPR := r.onPR
		r.mu.Unlock()
		if typ == watch.Added && !seen && !done && onPR != nil {
			onPR(obj)
		}
	})
}

// completer marks each new PipelineRun succeeded at once (requests named
// "cl-" after clientDelay, so that a client started after the create is
// waiting when it happens), as Tekton writes a finished run's status.
type completer struct {
	c           dynamic.Interface
	jobs        chan *unstructured.Unstructured
	clientDelay time.Duration
}

func startCompleter(ctx context.Context, c dynamic.Interface) *completer {
	k := &completer{c: c, jobs: make(chan *unstructured.Unstructured, 100000), clientDelay: 500 * time.Millisecond}
	for i := 0; i < 16; i++ {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case pr := <-k.jobs:
					k.complete(ctx, pr)
				}
			}
		}()
	}
	return k
}

func (k *completer) enqueue(pr *unstructured.Unstructured) {
	if strings.HasPrefix(pr.GetLabels()[nameLabel], "cl-") {
		time.AfterFunc(k.clientDelay, func() { k.jobs <- pr })
		return
	}
	k.jobs <- pr
}

func (k *completer) complete(ctx context.Context, pr *unstructured.Unstructured) {
	now := time.Now().UTC().Format(time.RFC3339)
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{
		"startTime": now, "completionTime": now,
		"conditions": []any{map[string]any{
			"type": "Succeeded", "status": "True", "reason": "Succeeded",
			"message": "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0", "lastTransitionTime": now,
		}},
		"results": []any{map[string]any{"name": "signature", "value": "signed"}},
	}})
	for attempt := 0; attempt < 5; attempt++ {
		_, err := k.c.Resource(prGVR).Namespace(pr.GetNamespace()).Patch(ctx, pr.GetName(), types.MergePatchType, patch,
			metav1.PatchOptions{}, "status")
		if err == nil || apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Metrics ----------------------------------------------------------------

type counters map[string]float64 // "VERB resource[/subresource]" -> count

func scrape(ctx context.Context, t *testing.T, cfg *rest.Config) counters {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body, err := dc.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	out := counters{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		labels := map[string]string{}
		for _, kv := range strings.Split(line[len("apiserver_request_total{"):end], ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(v, `"`)
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		res := labels["resource"]
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		key := labels["verb"] + " " + res
		// Refused calls (a stale patch's 422, a 404) are told apart.
		if c, _ := strconv.Atoi(labels["code"]); c >= 400 {
			key += " " + labels["code"]
		}
		out[key] += v
	}
	return out
}

func (a counters) minus(b counters) counters {
	out := counters{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// split: writes and reads (GET and LIST; watches are long-running and few).
func (c counters) split() (writes, reads float64) {
	for k, v := range c {
		verb, _, _ := strings.Cut(k, " ")
		switch verb {
		case "POST", "PUT", "PATCH", "DELETE":
			writes += v
		case "GET", "LIST":
			reads += v
		}
	}
	return
}

// /proc figures of a process.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func procKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}

// Statistics ---------------------------------------------------------------

type dist struct {
	N                  int                `json:"n"`
	P50, P90, P99, Max float64            `json:"-"`
	MS                 map[string]float64 `json:"ms"`
	samples            []float64
}

func newDist(xs []float64) dist {
	sort.Float64s(xs)
	d := dist{N: len(xs), samples: xs}
	q := func(p float64) float64 {
		if len(xs) == 0 {
			return math.NaN()
		}
		i := int(math.Ceil(p*float64(len(xs)))) - 1
		if i < 0 {
			i = 0
		}
		return xs[i]
	}
	d.P50, d.P90, d.P99, d.Max = q(0.5), q(0.9), q(0.99), q(1)
	d.MS = map[string]float64{"p50": d.P50, "p90": d.P90, "p99": d.P99, "max": d.Max}
	return d
}

// The bench ----------------------------------------------------------------

type bench struct {
	t                  *testing.T
	ctx                context.Context
	root, buildDir     string
	remote, internal   *bed.Cluster
	remoteCfg, intCfg  *rest.Config
	remoteC, internalC dynamic.Interface
	rec                *recorder
	done               *completer
	remoteKC, intKC    string
	policyDir, outDir  string
	luaDir             string
	ctl                *exec.Cmd
	ctlLog             *os.File
}

type phase struct {
	Flavor     string             `json:"flavor"`
	Kind       string             `json:"kind"` // single, burst
	N          int                `json:"n"`
	Finished   int                `json:"finished"`
	Seconds    float64            `json:"seconds"`
	Throughput float64            `json:"round_trips_per_s"`
	Admission  dist               `json:"admission"`
	Relay      dist               `json:"relay"`
	RoundTrip  dist               `json:"round_trip"`
	Client     *dist              `json:"client_relay,omitempty"`
	RemoteW    float64            `json:"remote_writes_per_request"`
	RemoteR    float64            `json:"remote_reads_per_request"`
	InternalW  float64            `json:"internal_writes_per_request"`
	InternalR  float64            `json:"internal_reads_per_request"`
	RemoteOps  counters           `json:"remote_ops"`
	IntOps     counters           `json:"internal_ops"`
	CPUPerReq  float64            `json:"controller_cpu_ms_per_request,omitempty"`
	Extra      map[string]float64 `json:"extra,omitempty"`
}

func (b *bench) kubectl(c *bed.Cluster, args ...string) {
	cmd := exec.Command(filepath.Join(b.root, ".cache", "bin", "kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
}

func (b *bench) applyYAML(c *bed.Cluster, yaml string) {
	f, err := os.CreateTemp("", "bench-*.yaml")
	if err != nil {
		b.t.Fatal(err)
	}
	defer os.Remove(f.Name())
	f.WriteString(yaml)
	f.Close()
	b.kubectl(c, "apply", "-f", f.Name())
}

func request(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "appstudio.redhat.com/v1alpha1", "kind": "InternalRequest",
		"metadata": map[string]any{"name": name, "namespace": tenantNS},
		"spec": map[string]any{
			"pipeline": map[string]any{"pipelineRef": map[string]any{"resolver": "cluster",
				"params": []any{map[string]any{"name": "name", "value": "sign-release"},
					map[string]any{"name": "kind", "value": "pipeline"}}}},
			"params": map[string]any{"component": "c1"},
		},
	}}
}

func (b *bench) create(name string) {
	for attempt := 0; ; attempt++ {
		_, err := b.remoteC.Resource(irGVR).Namespace(tenantNS).Create(b.ctx, request(name), metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return
		}
		if attempt == 5 {
			b.t.Fatalf("creating %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle deletes every request and PipelineRun and waits until both lists
// are empty (bounded), so that phases do not see each other's objects.
func (b *bench) settle() {
	ctx := b.ctx
	_ = b.remoteC.Resource(irGVR).Namespace(tenantNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = b.internalC.Resource(prGVR).Namespace(controllerNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		irs, err1 := b.remoteC.Resource(irGVR).Namespace(tenantNS).List(ctx, metav1.ListOptions{Limit: 1})
		prs, err2 := b.internalC.Resource(prGVR).Namespace(controllerNS).List(ctx, metav1.ListOptions{Limit: 1})
		if err1 == nil && err2 == nil && len(irs.Items) == 0 && len(prs.Items) == 0 {
			break
		}
		// A request still holding a finalizer (the same-writes floor
		// cut off by its deadline) is let go.
		if err1 == nil && len(irs.Items) > 0 && time.Until(deadline) < 100*time.Second {
			list, _ := b.remoteC.Resource(irGVR).Namespace(tenantNS).List(ctx, metav1.ListOptions{})
			for _, it := range list.Items {
				if len(it.GetFinalizers()) > 0 {
					_, _ = b.remoteC.Resource(irGVR).Namespace(tenantNS).Patch(ctx, it.GetName(), types.MergePatchType,
						[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let the controller's queue drain the DELETED events.
	time.Sleep(time.Second)
}

// run drives one phase: n requests one at a time (single) or all at once
// (burst), until all are finished or the phase's deadline passes.
func (b *bench) run(flavor, kind string, n int, clientRelay int) phase {
	short := map[string]string{"controller": "c", "raw floor": "r", "same-writes floor": "s"}[flavor]
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s%d-%05d", short, kind[:1], n, i)
	}
	pid := 0
	if flavor == "controller" && b.ctl != nil {
		pid = b.ctl.Process.Pid
	}
	r0, i0, cpu0 := scrape(b.ctx, b.t, b.remoteCfg), scrape(b.ctx, b.t, b.intCfg), procCPU(pid)
	deadline := time.Now().Add(60*time.Second + time.Duration(n)*60*time.Millisecond)
	isFinal := func(name string) bool {
		b.rec.mu.Lock()
		defer b.rec.mu.Unlock()
		_, ok := b.rec.final[name]
		return ok
	}
	began := time.Now()
	if kind == "single" {
		for _, name := range names {
			b.create(name)
			for !isFinal(name) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	} else {
		next := make(chan string, n)
		for _, name := range names {
			next <- name
		}
		close(next)
		var wg sync.WaitGroup
		for i := 0; i < creators; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range next {
					b.create(name)
				}
			}()
		}
		wg.Wait()
		for time.Now().Before(deadline) {
			b.rec.mu.Lock()
			all := true
			for _, name := range names {
				if _, ok := b.rec.final[name]; !ok {
					all = false
					break
				}
			}
			b.rec.mu.Unlock()
			if all {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Counters settle: late writes (finalizer removal, PipelineRun delete)
	// of the last requests land after their final status.
	time.Sleep(1500 * time.Millisecond)
	r1, i1, cpu1 := scrape(b.ctx, b.t, b.remoteCfg), scrape(b.ctx, b.t, b.intCfg), procCPU(pid)

	p := phase{Flavor: flavor, Kind: kind, N: n}
	var adm, rel, rt []float64
	first, last := time.Time{}, time.Time{}
	b.rec.mu.Lock()
	for _, name := range names {
		added, ok1 := b.rec.irAdded[name]
		if ok1 && (first.IsZero() || added.Before(first)) {
			first = added
		}
		if pa, ok := b.rec.prAdded[name]; ok && ok1 {
			adm = append(adm, ms(pa.Sub(added)))
		}
		fin, ok := b.rec.final[name]
		if !ok {
			continue
		}
		p.Finished++
		if fin.After(last) {
			last = fin
		}
		if pd, ok := b.rec.prDone[name]; ok {
			rel = append(rel, ms(fin.Sub(pd)))
		}
		if ok1 {
			rt = append(rt, ms(fin.Sub(added)))
		}
	}
	b.rec.mu.Unlock()
	p.Seconds = time.Since(began).Seconds()
	if p.Finished > 0 && !first.IsZero() {
		p.Throughput = float64(p.Finished) / last.Sub(first).Seconds()
	}
	p.Admission, p.Relay, p.RoundTrip = newDist(adm), newDist(rel), newDist(rt)

	// The bench's own calls: one create per request on remote, one status
	// patch per PipelineRun on internal.
	p.RemoteOps, p.IntOps = r1.minus(r0), i1.minus(i0)
	rw, rr := p.RemoteOps.split()
	iw, ir := p.IntOps.split()
	rw -= float64(n)
	iw -= float64(n)
	p.RemoteW, p.RemoteR = rw/float64(n), rr/float64(n)
	p.InternalW, p.InternalR = iw/float64(n), ir/float64(n)
	if pid != 0 {
		p.CPUPerReq = ms(cpu1-cpu0) / float64(n)
	}
	if clientRelay > 0 {
		d := b.clientRelay(flavor, clientRelay)
		p.Client = &d
	}
	b.t.Logf("%s %s %d: %d finished in %.1fs; admission p50 %.1f ms p99 %.1f ms; relay p50 %.1f ms; %.0f/s; remote writes %.2f/request",
		flavor, kind, n, p.Finished, p.Seconds, p.Admission.P50, p.Admission.P99, p.Relay.P50, p.Throughput, p.RemoteW)
	b.settle()
	return p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// clientRelay: requests created one at a time, each waited for by the
// remote side's client (wait-for-internal-request); its PipelineRun is
// completed clientDelay after it appears, so the client is already
// waiting; the figure is the client's exit after the run was done.
func (b *bench) clientRelay(flavor string, n int) dist {
	short := map[string]string{"controller": "c", "raw floor": "r", "same-writes floor": "s"}[flavor]
	bin := filepath.Join(b.buildDir, "wait-for-internal-request")
	var xs []float64
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cl-%s-%03d", short, i)
		b.create(name)
		cmd := exec.Command(bin, "-n", name, "--namespace", tenantNS, "-t", "30", "--kubeconfig", b.remote.AdminKubeconfig)
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Start(); err != nil {
			b.t.Fatalf("%s: %v", bin, err)
		}
		err := cmd.Wait()
		exited := time.Now()
		b.rec.mu.Lock()
		done, ok := b.rec.prDone[name]
		b.rec.mu.Unlock()
		if err != nil || !ok {
			b.t.Logf("client relay %s: exit %v, run done seen %v", name, err, ok)
			continue
		}
		xs = append(xs, ms(exited.Sub(done)))
	}
	return newDist(xs)
}

// Floors -------------------------------------------------------------------

// floor: the same work done by a plain Go loop, no controller. raw: create
// the PipelineRun, patch the final status; same: the writes the controller
// is meant to make (finalizer, create, Running, one Event; final status,
// one Event, delete the run, remove the finalizer).
type floor struct {
	same             bool
	remote, internal dynamic.Interface
	jobs             chan func()
	mu               sync.Mutex
	locks            map[string]*sync.Mutex
	rv               map[string]string
}

func startFloor(ctx context.Context, t *testing.T, same bool, remoteCfg, intCfg *rest.Config) {
	f := &floor{same: same, jobs: make(chan func(), 100000), locks: map[string]*sync.Mutex{}, rv: map[string]string{}}
	f.remote = dynamic.NewForConfigOrDie(remoteCfg)
	f.internal = dynamic.NewForConfigOrDie(intCfg)
	for i := 0; i < workers; i++ {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-f.jobs:
					job()
				}
			}
		}()
	}
	mine := "r-"
	if same {
		mine = "s-"
	}
	watchForever(ctx, t, f.remote.Resource(irGVR).Namespace(tenantNS), func(typ watch.EventType, obj *unstructured.Unstructured, _ time.Time) {
		name := obj.GetName()
		if typ != watch.Added || finished(obj) || !(strings.HasPrefix(name, mine) || strings.HasPrefix(name, "cl-"+mine)) {
			return
		}
		f.jobs <- func() { f.start(ctx, obj) }
	})
	watchForever(ctx, t, f.internal.Resource(prGVR).Namespace(controllerNS), func(typ watch.EventType, obj *unstructured.Unstructured, _ time.Time) {
		name := obj.GetLabels()[nameLabel]
		if typ != watch.Modified || !prDone(obj) || !(strings.HasPrefix(name, mine) || strings.HasPrefix(name, "cl-"+mine)) {
			return
		}
		f.jobs <- func() { f.finish(ctx, name, obj) }
	})
}

func (f *floor) lock(name string) func() {
	f.mu.Lock()
	l := f.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		f.locks[name] = l
	}
	f.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (f *floor) ir() dynamic.ResourceInterface { return f.remote.Resource(irGVR).Namespace(tenantNS) }

func (f *floor) event(ctx context.Context, name, uid, reason string) {
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"generateName": name + ".", "namespace": tenantNS},
		"involvedObject": map[string]any{"apiVersion": "appstudio.redhat.com/v1alpha1", "kind": "InternalRequest", "namespace": tenantNS, "name": name, "uid": uid},
		"reason":         reason, "message": reason, "type": "Normal",
		"source": map[string]any{"component": "bench-floor"}, "count": 1,
		"firstTimestamp": time.Now().UTC().Format(time.RFC3339), "lastTimestamp": time.Now().UTC().Format(time.RFC3339),
	}}
	_, _ = f.remote.Resource(eventGVR).Namespace(tenantNS).Create(ctx, ev, metav1.CreateOptions{})
}

func status(reason string) []byte {
	now := time.Now().UTC().Format(time.RFC3339)
	st := map[string]any{"conditions": []any{map[string]any{"type": "Succeeded", "status": "True", "reason": reason,
		"message": "PipelineRun succeeded", "lastTransitionTime": now}}, "completionTime": now,
		"results": map[string]any{"signature": "signed"}}
	if reason == "Running" {
		st = map[string]any{"conditions": []any{map[string]any{"type": "Succeeded", "status": "Unknown", "reason": reason,
			"message": "running", "lastTransitionTime": now}}, "startTime": now, "pipelineRun": controllerNS + "/pr"}
	}
	b, _ := json.Marshal(map[string]any{"status": st})
	return b
}

func (f *floor) start(ctx context.Context, req *unstructured.Unstructured) {
	name := req.GetName()
	defer f.lock(name)()
	rv := req.GetResourceVersion()
	if f.same {
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"add","path":"/metadata/finalizers","value":[%q]}]`, rv, finalizer)
		out, err := f.ir().Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil {
			return
		}
		rv = out.GetResourceVersion()
	}
	pr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": "floor-" + name, "namespace": controllerNS,
			"labels": map[string]any{nameLabel: name, nsLabel: tenantNS, prefix + "request-uid": string(req.GetUID())}},
		"spec": map[string]any{"pipelineRef": map[string]any{"resolver": "cluster", "params": []any{
			map[string]any{"name": "name", "value": "sign-release"}, map[string]any{"name": "namespace", "value": controllerNS},
			map[string]any{"name": "kind", "value": "pipeline"}}},
			"params": []any{map[string]any{"name": "component", "value": "c1"}}},
	}}
	if _, err := f.internal.Resource(prGVR).Namespace(controllerNS).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		return
	}
	if f.same {
		out, err := f.ir().Patch(ctx, name, types.MergePatchType, status("Running"), metav1.PatchOptions{}, "status")
		if err == nil {
			rv = out.GetResourceVersion()
		}
		f.event(ctx, name, string(req.GetUID()), "Started")
	}
	f.mu.Lock()
	f.rv[name] = rv
	f.mu.Unlock()
}

func (f *floor) finish(ctx context.Context, name string, pr *unstructured.Unstructured) {
	defer f.lock(name)()
	out, err := f.ir().Patch(ctx, name, types.MergePatchType, status("Succeeded"), metav1.PatchOptions{}, "status")
	if err != nil || !f.same {
		return
	}
	f.event(ctx, name, string(out.GetUID()), "Succeeded")
	uid := pr.GetUID()
	_ = f.internal.Resource(prGVR).Namespace(controllerNS).Delete(ctx, pr.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"remove","path":"/metadata/finalizers/0"}]`, out.GetResourceVersion())
	_, _ = f.ir().Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
}

// The controller ---------------------------------------------------------

func (b *bench) startController() time.Time {
	logPath := filepath.Join(b.outDir, "controller.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	argv := []string{filepath.Join(b.buildDir, "internal-services"),
		"--kubeconfig", b.intKC, "--remote-cluster-config-file", b.remoteKC,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--policy-dir", b.policyDir, "--lua-dir", b.luaDir}
	// BENCH_WRAP runs the controller under a profiler, e.g.
	// "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out".
	if wrap := strings.Fields(os.Getenv("BENCH_WRAP")); len(wrap) > 0 {
		argv = append(wrap, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SERVICE_NAMESPACE="+controllerNS)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.ctl, b.ctlLog = cmd, logf
	return began
}

func (b *bench) stopController() {
	if b.ctl == nil {
		return
	}
	_ = b.ctl.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.ctl.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = b.ctl.Process.Kill()
		<-done
	}
	b.ctlLog.Close()
	b.ctl = nil
}

// waitIdle waits until the controller's CPU time stops growing (bounded).
func (b *bench) waitIdle(limit time.Duration) {
	pid := b.ctl.Process.Pid
	deadline := time.Now().Add(limit)
	last, still := procCPU(pid), 0
	for time.Now().Before(deadline) && still < 4 {
		time.Sleep(250 * time.Millisecond)
		now := procCPU(pid)
		if now == last {
			still++
		} else {
			still = 0
		}
		last = now
	}
}

type memory struct {
	Held          int     `json:"held"`
	StartupMS     float64 `json:"startup_ms"`
	BaselineRSSKB int64   `json:"baseline_rss_kb"`
	RSSKB         int64   `json:"rss_kb"`
	PeakRSSKB     int64   `json:"peak_rss_kb"`
	GrowthBytes   float64 `json:"growth_bytes_per_request"`
	Floor         bool    `json:"-"`
}

// hold: RSS with no request and with held finished requests present, and
// the start-up (process start -> the first PipelineRun) with them.
func (b *bench) hold(held int) memory {
	m := memory{Held: held}
	b.stopController()
	b.startController()
	b.create("probe-0")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b.rec.mu.Lock()
		_, ok := b.rec.final["probe-0"]
		b.rec.mu.Unlock()
		if ok {
			break
		}
	}
	b.waitIdle(10 * time.Second)
	m.BaselineRSSKB = procKB(b.ctl.Process.Pid, "VmRSS")
	b.stopController()
	b.settle()

	// held finished requests, written as the controller leaves them.
	next := make(chan int, held)
	for i := 0; i < held; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	fin := status("Succeeded")
	for w := 0; w < creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("held-%05d", i)
				b.create(name)
				for a := 0; a < 5; a++ {
					if _, err := b.remoteC.Resource(irGVR).Namespace(tenantNS).Patch(b.ctx, name, types.MergePatchType, fin, metav1.PatchOptions{}, "status"); err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	b.create("probe-1")
	began := b.startController()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		b.rec.mu.Lock()
		at, ok := b.rec.prAdded["probe-1"]
		b.rec.mu.Unlock()
		if ok {
			m.StartupMS = ms(at.Sub(began))
			break
		}
	}
	b.waitIdle(60 * time.Second)
	pid := b.ctl.Process.Pid
	m.RSSKB, m.PeakRSSKB = procKB(pid, "VmRSS"), procKB(pid, "VmHWM")
	m.GrowthBytes = float64(m.RSSKB-m.BaselineRSSKB) * 1024 / float64(held)
	b.t.Logf("held %d: start-up %.0f ms, RSS %d kB (peak %d kB, baseline %d kB), %.0f B/request",
		held, m.StartupMS, m.RSSKB, m.PeakRSSKB, m.BaselineRSSKB, m.GrowthBytes)
	b.stopController()
	b.settle()
	return m
}

func (b *bench) setup() {
	t := b.t
	cl := bed.StartMany(t, "remote", "internal")
	b.remote, b.internal = cl[0], cl[1]
	if err := b.remote.InstallCRDs(false); err != nil {
		t.Fatal(err)
	}
	// Tekton's CRDs, no Tekton: the completer plays its status writes.
	if err := b.internal.InstallCRDs(true); err != nil {
		t.Fatal(err)
	}
	b.remoteCfg, b.intCfg = fast(b.remote, t), fast(b.internal, t)
	b.remoteC, b.internalC = dynamic.NewForConfigOrDie(b.remoteCfg), dynamic.NewForConfigOrDie(b.intCfg)
	b.kubectl(b.remote, "apply", "-f", filepath.Join(b.root, "deploy", "remote", "clusterrole.yaml"),
		"-f", filepath.Join(b.root, "deploy", "remote", "clusterrolebinding.yaml"))
	for _, f := range []string{"00-namespace.yaml", "01-serviceaccount.yaml", "02-role.yaml"} {
		b.kubectl(b.internal, "apply", "-f", filepath.Join(b.root, "deploy", f))
	}
	var err error
	if b.remoteKC, err = b.remote.Kubeconfig("internal-services-remote"); err != nil {
		t.Fatal(err)
	}
	if b.intKC, err = b.internal.Kubeconfig("system:serviceaccount:internal-services:internal-services",
		"system:serviceaccounts", "system:serviceaccounts:internal-services"); err != nil {
		t.Fatal(err)
	}
	b.applyYAML(b.remote, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+tenantNS+"\n")
	b.applyYAML(b.internal, `apiVersion: appstudio.redhat.com/v1alpha1
kind: InternalServicesConfig
metadata:
  name: config
  namespace: `+controllerNS+`
spec:
  allowList: ["`+tenantNS+`"]
  debug: false
`)
	b.policyDir = t.TempDir()
	for _, p := range []string{"allowlist.lua", "git_url.lua"} {
		data, err := os.ReadFile(filepath.Join(b.root, "policies", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.policyDir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.rec = newRecorder()
	b.done = startCompleter(b.ctx, b.internalC)
	b.rec.onPR = b.done.enqueue
	b.rec.watch(b.ctx, t, b.remoteC, b.internalC)
}

func TestE2E(t *testing.T) {
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bench{t: t, ctx: ctx, root: root, buildDir: os.Getenv("BENCH_BUILD_DIR"), outDir: os.Getenv("BENCH_OUT")}
	if b.buildDir == "" {
		b.buildDir = filepath.Join(root, "build-bench")
	}
	if b.luaDir = os.Getenv("BENCH_LUA_DIR"); b.luaDir == "" {
		b.luaDir = filepath.Join(root, "lua")
	}
	if b.outDir == "" {
		b.outDir = filepath.Join(b.buildDir, "e2e")
	}
	_ = os.MkdirAll(b.outDir, 0o755)
	_ = os.Remove(filepath.Join(b.outDir, "controller.log"))
	single := envInt("BENCH_SINGLE", 50)
	clients := envInt("BENCH_CLIENT", 10)
	bursts := envList("BENCH_BURSTS", "100,1000,5000")
	held := envInt("BENCH_HELD", 10000)
	b.setup()
	defer b.stopController()

	var phases []phase
	flavors := []string{"raw floor", "same-writes floor", "controller"}
	if v := os.Getenv("BENCH_FLAVORS"); v != "" {
		flavors = strings.Split(v, ",")
	}
	for _, flavor := range flavors {
		fctx, fcancel := context.WithCancel(ctx)
		switch flavor {
		case "raw floor":
			startFloor(fctx, t, false, b.remoteCfg, b.intCfg)
		case "same-writes floor":
			startFloor(fctx, t, true, b.remoteCfg, b.intCfg)
		case "controller":
			b.startController()
			// Warm: caches synced, Lua loaded.
			b.run(flavor, "warm", 5, 0)
		}
		if single > 0 {
			phases = append(phases, b.run(flavor, "single", single, clients))
		}
		for _, n := range bursts {
			phases = append(phases, b.run(flavor, "burst", n, 0))
		}
		if flavor == "controller" {
			b.stopController()
		}
		fcancel()
	}
	var mem *memory
	if held > 0 {
		m := b.hold(held)
		mem = &m
	}
	report(t, b.outDir, phases, mem)
}

// Report -----------------------------------------------------------------

func find(phases []phase, flavor, kind string, n int) *phase {
	for i := range phases {
		if phases[i].Flavor == flavor && phases[i].Kind == kind && (n == 0 || phases[i].N == n) {
			return &phases[i]
		}
	}
	return nil
}

func report(t *testing.T, outDir string, phases []phase, mem *memory) {
	host, _ := os.Hostname()
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
				break
			}
		}
	}
	machine := fmt.Sprintf("%s, %d cores (%s), %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"), numCPU(), cpu, host)
	var sb strings.Builder
	fmt.Fprintf(&sb, "machine: %s\n\n", machine)
	fmt.Fprintf(&sb, "| figure | controller | raw floor | same-writes floor | ÷ raw | ÷ same |\n|---|---:|---:|---:|---:|---:|\n")
	row := func(label string, get func(p *phase) float64, kind string, n int, unit string) {
		c, r, s := find(phases, "controller", kind, n), find(phases, "raw floor", kind, n), find(phases, "same-writes floor", kind, n)
		if c == nil {
			return
		}
		val := func(p *phase) (float64, string) {
			if p == nil {
				return math.NaN(), "–"
			}
			v := get(p)
			if math.IsNaN(v) {
				return v, "–"
			}
			return v, fmt.Sprintf("%.*f%s", prec(v), v, unit)
		}
		cv, cs := val(c)
		rv, rs := val(r)
		sv, ss := val(s)
		ratio := func(a, b float64) string {
			if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f×", a/b)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", label, cs, rs, ss, ratio(cv, rv), ratio(cv, sv))
	}
	kinds := []struct {
		kind string
		n    int
	}{}
	for _, p := range phases {
		if p.Flavor == "controller" {
			kinds = append(kinds, struct {
				kind string
				n    int
			}{p.Kind, p.N})
		}
	}
	for _, k := range kinds {
		tag := fmt.Sprintf("1 in flight ×%d", k.n)
		if k.kind == "burst" {
			tag = fmt.Sprintf("burst %d", k.n)
		}
		for _, q := range []string{"p50", "p90", "p99", "max"} {
			q := q
			row("admission "+q+", "+tag, func(p *phase) float64 { return p.Admission.MS[q] }, k.kind, k.n, " ms")
		}
		row("relay to watch p50, "+tag, func(p *phase) float64 { return p.Relay.P50 }, k.kind, k.n, " ms")
		row("relay to watch p99, "+tag, func(p *phase) float64 { return p.Relay.P99 }, k.kind, k.n, " ms")
		if k.kind == "single" {
			row("relay to client p50, "+tag, func(p *phase) float64 {
				if p.Client == nil {
					return math.NaN()
				}
				return p.Client.P50
			}, k.kind, k.n, " ms")
			row("relay to client p99, "+tag, func(p *phase) float64 {
				if p.Client == nil {
					return math.NaN()
				}
				return p.Client.P99
			}, k.kind, k.n, " ms")
		}
		if k.kind == "burst" {
			row("throughput, "+tag, func(p *phase) float64 { return p.Throughput }, k.kind, k.n, "/s")
			row("finished in time, "+tag, func(p *phase) float64 { return float64(p.Finished) }, k.kind, k.n, "")
		}
		row("remote writes/request, "+tag, func(p *phase) float64 { return p.RemoteW }, k.kind, k.n, "")
		row("remote reads/request, "+tag, func(p *phase) float64 { return p.RemoteR }, k.kind, k.n, "")
		row("internal writes/request, "+tag, func(p *phase) float64 { return p.InternalW }, k.kind, k.n, "")
		row("internal reads/request, "+tag, func(p *phase) float64 { return p.InternalR }, k.kind, k.n, "")
		row("controller CPU/request, "+tag, func(p *phase) float64 {
			if p.Flavor != "controller" {
				return math.NaN()
			}
			return p.CPUPerReq
		}, k.kind, k.n, " ms")
	}
	if mem != nil {
		fmt.Fprintf(&sb, "\n| memory and start-up, %d finished requests held | controller |\n|---|---:|\n", mem.Held)
		fmt.Fprintf(&sb, "| start-up (process start → first PipelineRun) | %.0f ms |\n", mem.StartupMS)
		fmt.Fprintf(&sb, "| RSS, no request | %.1f MB |\n", float64(mem.BaselineRSSKB)/1024)
		fmt.Fprintf(&sb, "| RSS, %d held | %.1f MB |\n", mem.Held, float64(mem.RSSKB)/1024)
		fmt.Fprintf(&sb, "| peak RSS (VmHWM), %d held | %.1f MB |\n", mem.Held, float64(mem.PeakRSSKB)/1024)
		fmt.Fprintf(&sb, "| growth per request held | %.0f B |\n", mem.GrowthBytes)
	}
	fmt.Print("\n" + sb.String())
	_ = os.WriteFile(filepath.Join(outDir, "table.md"), []byte(sb.String()), 0o644)
	js, _ := json.MarshalIndent(map[string]any{"machine": machine, "phases": phases, "memory": mem}, "", "  ")
	_ = os.WriteFile(filepath.Join(outDir, "e2e.json"), js, 0o644)

	// Latency distributions for the plot: one block per series, sorted
	// samples with their cumulative fraction.
	var dat strings.Builder
	var series []string
	for _, p := range phases {
		if p.Kind == "warm" || len(p.Admission.samples) == 0 {
			continue
		}
		label := fmt.Sprintf("%s, %s %d", p.Flavor, p.Kind, p.N)
		series = append(series, label)
		fmt.Fprintf(&dat, "# %s\n", label)
		for i, x := range p.Admission.samples {
			fmt.Fprintf(&dat, "%.3f %.5f\n", x, float64(i+1)/float64(len(p.Admission.samples)))
		}
		dat.WriteString("\n\n")
	}
	_ = os.WriteFile(filepath.Join(outDir, "admission.dat"), []byte(dat.String()), 0o644)
	_ = os.WriteFile(filepath.Join(outDir, "series.txt"), []byte(strings.Join(series, "\n")+"\n"), 0o644)
}

func prec(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	default:
		return 2
	}
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
