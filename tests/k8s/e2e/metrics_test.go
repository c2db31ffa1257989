package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"internal-services/tests/k8s/bed"
)

// scrape reads a controller's /metrics through Prometheus's own text parser,
// which refuses anything a Prometheus server would refuse.
func scrape(t *testing.T, port int) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return families
}

// matches reports whether m carries every label of want.
func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// sample is the summed value of the series of name with the labels of want
// (a histogram's count), and whether any exists.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
	for _, m := range f.GetMetric() {
		if !matches(m, want) {
			continue
		}
		found = true
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		default:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func (e *env) waitSample(port int, name string, want map[string]string, what string, ok func(float64) bool) float64 {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, _ := sample(scrape(e.t, port), name, want)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s%v did not become %s (is %v)", name, want, what, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	e := setup(t)
	// Long enough that a scrape sees it running.
	e.pipeline("metrics-slow", "succeed", "6s", "")
	port := freePort(t)
	ctrl := e.startController("metrics", "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--leader-elect", "--leader-election-id", "e2e-metrics")
	ctl := map[string]string{"controller": "internalrequest"}
	queue := map[string]string{"name": "internalrequest", "controller": "internalrequest"}

	// The first request makes every family appear (rest_client_* with the
	// first call, the attempt family with the first outcome).
	e.create(request{ns: "tenant-a", name: "metrics-warmup", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "metrics-warmup", "success", 60*time.Second, hasCondition("True", "Succeeded"), ctrl)

	t.Run("every family of controller-runtime, client-go and the existing controller", func(t *testing.T) {
		e.t = t
		fams := scrape(t, port)
		want := map[string]dto.MetricType{
			"controller_runtime_reconcile_total":           dto.MetricType_COUNTER,
			"controller_runtime_reconcile_errors_total":    dto.MetricType_COUNTER,
			"controller_runtime_reconcile_time_seconds":    dto.MetricType_HISTOGRAM,
			"controller_runtime_max_concurrent_reconciles": dto.MetricType_GAUGE,
			"controller_runtime_active_workers":            dto.MetricType_GAUGE,
			"workqueue_depth":                              dto.MetricType_GAUGE,
			"workqueue_adds_total":                         dto.MetricType_COUNTER,
			"workqueue_queue_duration_seconds":             dto.MetricType_HISTOGRAM,
			"workqueue_work_duration_seconds":              dto.MetricType_HISTOGRAM,
			"workqueue_unfinished_work_seconds":            dto.MetricType_GAUGE,
			"workqueue_longest_running_processor_seconds":  dto.MetricType_GAUGE,
			"workqueue_retries_total":                      dto.MetricType_COUNTER,
			"rest_client_requests_total":                   dto.MetricType_COUNTER,
			"rest_client_request_duration_seconds":         dto.MetricType_HISTOGRAM,
			"leader_election_master_status":                dto.MetricType_GAUGE,
			"process_resident_memory_bytes":                dto.MetricType_GAUGE,
			"process_cpu_seconds_total":                    dto.MetricType_COUNTER,
			"process_open_fds":                             dto.MetricType_GAUGE,
			"process_max_fds":                              dto.MetricType_GAUGE,
			"process_start_time_seconds":                   dto.MetricType_GAUGE,
			"internal_request_attempt_total":               dto.MetricType_COUNTER,
			"internal_request_attempt_duration_seconds":    dto.MetricType_HISTOGRAM,
			"internal_request_attempt_concurrent_requests": dto.MetricType_GAUGE,
			"internal_services_watch_restarts_total":       dto.MetricType_COUNTER,
			"internal_services_relists_total":              dto.MetricType_COUNTER,
		}
		var missing []string
		for name, typ := range want {
			f, ok := fams[name]
			if !ok {
				missing = append(missing, name)
				continue
			}
			if f.GetType() != typ {
				t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
			}
			if f.GetHelp() == "" {
				t.Errorf("%s has no # HELP", name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("missing families: %s", strings.Join(missing, ", "))
		}
		// Every family, ours included, has HELP and TYPE.
		for name, f := range fams {
			if f.GetType() == dto.MetricType_UNTYPED && !strings.HasPrefix(name, "internal_services_") {
				t.Errorf("%s has no # TYPE", name)
			}
		}
		// controller-runtime's and the existing controller's layouts (the
		// parser keeps the +Inf bucket).
		bounds := func(name string) string {
			var out []string
			for _, b := range fams[name].GetMetric()[0].GetHistogram().GetBucket() {
				out = append(out, fmt.Sprint(b.GetUpperBound()))
			}
			return strings.Join(out, " ")
		}
		if b := bounds("controller_runtime_reconcile_time_seconds"); b != "0.005 0.01 0.025 0.05 0.1 0.15 0.2 0.25 0.3 0.35 "+
			"0.4 0.45 0.5 0.6 0.7 0.8 0.9 1 1.25 1.5 1.75 2 2.5 3 3.5 4 4.5 5 6 7 8 9 10 15 20 25 30 40 50 60 +Inf" {
			t.Errorf("reconcile_time buckets %s", b)
		}
		if b := bounds("internal_request_attempt_duration_seconds"); b != "10 20 40 60 150 300 450 900 1800 3600 +Inf" {
			t.Errorf("attempt duration buckets %s", b)
		}
		if b := bounds("workqueue_queue_duration_seconds"); b != "1e-08 1e-07 1e-06 1e-05 0.0001 0.001 0.01 0.1 1 10 100 1000 +Inf" {
			t.Errorf("workqueue buckets %s", b)
		}
		if b := bounds("rest_client_request_duration_seconds"); b != "0.005 0.025 0.1 0.25 0.5 1 2 4 8 15 30 60 +Inf" {
			t.Errorf("rest_client buckets %s", b)
		}
		if v, _ := sample(fams, "controller_runtime_max_concurrent_reconciles", ctl); v != 50 {
			t.Errorf("max_concurrent_reconciles %v, want 50", v)
		}
		for c, cluster := range map[string]*bed.Cluster{"internal": e.internal, "remote": e.remote} {
			// client-go's host label: the server's host:port.
			u, err := url.Parse(cluster.APIServerURL)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := sample(fams, "rest_client_requests_total", map[string]string{"code": "200", "method": "GET",
				"host": u.Host}); !ok || v < 1 {
				t.Errorf("rest_client_requests_total for the %s cluster (%s): %v", c, u.Host, v)
			}
			if v, ok := sample(fams, "rest_client_request_duration_seconds", map[string]string{"verb": "GET", "host": u.Host}); !ok || v < 1 {
				t.Errorf("rest_client_request_duration_seconds for the %s cluster (%s): %v", c, u.Host, v)
			}
			if _, ok := sample(fams, "internal_services_relists_total", map[string]string{"cluster": c}); !ok {
				t.Errorf("no relist counter for the %s cluster", c)
			}
		}
		if v, _ := sample(fams, "leader_election_master_status", map[string]string{"name": "e2e-metrics"}); v != 1 {
			t.Errorf("leader_election_master_status{name=e2e-metrics} %v, want 1", v)
		}
		if v, _ := sample(fams, "process_resident_memory_bytes", nil); v < 1<<20 {
			t.Errorf("process_resident_memory_bytes %v", v)
		}
		if v, _ := sample(fams, "process_start_time_seconds", nil); v < float64(time.Now().Add(-time.Hour).Unix()) ||
			v > float64(time.Now().Unix()+1) {
			t.Errorf("process_start_time_seconds %v", v)
		}
	})

	t.Run("values move as requests flow", func(t *testing.T) {
		e.t = t
		before := scrape(t, port)
		succeeded := map[string]string{"request": "metrics-slow", "namespace": "tenant-a", "reason": "Succeeded", "succeeded": "true"}
		durations0, _ := sample(before, "internal_request_attempt_duration_seconds", succeeded)
		success0, _ := sample(before, "controller_runtime_reconcile_total", map[string]string{"controller": "internalrequest", "result": "success"})
		reconciles0, _ := sample(before, "controller_runtime_reconcile_total", ctl)
		times0, _ := sample(before, "controller_runtime_reconcile_time_seconds", ctl)
		adds0, _ := sample(before, "workqueue_adds_total", queue)
		creates0, _ := sample(before, "rest_client_requests_total", map[string]string{"code": "201", "method": "POST"})
		if v, _ := sample(before, "internal_request_attempt_concurrent_requests", nil); v != 0 {
			t.Fatalf("%v attempts running before any was started", v)
		}

		e.create(request{ns: "tenant-a", name: "metrics-1", refParams: clusterRef("metrics-slow")})
		e.waitRequest("tenant-a", "metrics-1", "Running", 60*time.Second, func(o *unstructured.Unstructured) bool {
			st, r, _ := condition(o)
			return (st == "Unknown" && r == "Running") || st == "True"
		}, ctrl)
		// The gauge goes up while the run goes on ...
		e.waitSample(port, "internal_request_attempt_concurrent_requests", nil, "1", func(v float64) bool { return v == 1 })
		e.waitRequest("tenant-a", "metrics-1", "success", 60*time.Second, hasCondition("True", "Succeeded"), ctrl)
		// ... and back down once it ended.
		e.waitSample(port, "internal_request_attempt_concurrent_requests", nil, "0", func(v float64) bool { return v == 0 })

		after := scrape(t, port)
		if v, _ := sample(after, "internal_request_attempt_total", succeeded); v != 1 {
			t.Errorf("internal_request_attempt_total%v = %v, want 1", succeeded, v)
		}
		if v, _ := sample(after, "internal_request_attempt_duration_seconds", succeeded); v != durations0+1 {
			t.Errorf("attempt duration count %v, want %v", v, durations0+1)
		}
		// The reconcile that wrote the outcome goes on to clean up; it is
		// counted when it returns.
		e.waitSample(port, "controller_runtime_reconcile_total", map[string]string{"controller": "internalrequest", "result": "success"},
			fmt.Sprintf("more than %v", success0), func(v float64) bool { return v > success0 })
		e.waitSample(port, "controller_runtime_active_workers", ctl, "0", func(v float64) bool { return v == 0 })
		after = scrape(t, port)
		if v, _ := sample(after, "controller_runtime_reconcile_total", ctl); v <= reconciles0 {
			t.Errorf("reconcile_total did not grow: %v -> %v", reconciles0, v)
		}
		if v, _ := sample(after, "controller_runtime_reconcile_time_seconds", ctl); v <= times0 {
			t.Errorf("reconcile_time count did not grow: %v -> %v", times0, v)
		}
		if v, _ := sample(after, "workqueue_adds_total", queue); v <= adds0 {
			t.Errorf("workqueue_adds_total did not grow: %v -> %v", adds0, v)
		}
		if v, _ := sample(after, "rest_client_requests_total", map[string]string{"code": "201", "method": "POST"}); v <= creates0 {
			t.Errorf("no POST answered 201 was counted: %v -> %v", creates0, v)
		}
	})

	t.Run("a rejection counts for its policy and its attempt", func(t *testing.T) {
		e.t = t
		policy := map[string]string{"policy": "allowlist.lua"}
		before, _ := sample(scrape(t, port), "internal_services_policy_denials_total", policy)
		e.create(request{ns: "tenant-b", name: "metrics-denied", refParams: clusterRef("sign-release")})
		e.waitRequest("tenant-b", "metrics-denied", "rejection", 60*time.Second, hasCondition("False", "Rejected"), ctrl)
		fams := scrape(t, port)
		if v, _ := sample(fams, "internal_services_policy_denials_total", policy); v != before+1 {
			t.Errorf("policy denials %v, want %v", v, before+1)
		}
		rejected := map[string]string{"request": "sign-release", "namespace": "tenant-b", "reason": "Rejected", "succeeded": "false"}
		if v, _ := sample(fams, "internal_request_attempt_total", rejected); v != 1 {
			t.Errorf("internal_request_attempt_total%v = %v, want 1", rejected, v)
		}
		if _, ok := sample(fams, "internal_request_attempt_duration_seconds", rejected); ok {
			t.Errorf("a rejected request, never started, has a duration")
		}
		if f := fams["internal_services_policy_denials_total"]; f.GetType() != dto.MetricType_COUNTER || f.GetHelp() == "" {
			t.Errorf("policy denials: type %v, help %q", f.GetType(), f.GetHelp())
		}
	})

	t.Run("a request deleted while it runs ends its attempt", func(t *testing.T) {
		e.t = t
		e.create(request{ns: "tenant-a", name: "metrics-deleted", refParams: clusterRef("never-ends")})
		e.waitRequest("tenant-a", "metrics-deleted", "Running", 60*time.Second, hasCondition("Unknown", "Running"), ctrl)
		e.waitSample(port, "internal_request_attempt_concurrent_requests", nil, "1", func(v float64) bool { return v == 1 })
		if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(context.Background(), "metrics-deleted",
			metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRequest("tenant-a", "metrics-deleted", "deletion", 60*time.Second,
			func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)
		e.waitSample(port, "internal_request_attempt_concurrent_requests", nil, "0", func(v float64) bool { return v == 0 })
		deleted := map[string]string{"request": "never-ends", "namespace": "tenant-a", "reason": "Deleted", "succeeded": "false"}
		if v, _ := sample(scrape(t, port), "internal_request_attempt_total", deleted); v != 1 {
			t.Errorf("internal_request_attempt_total%v = %v, want 1", deleted, v)
		}
	})

	t.Run("a log line for every PipelineRun created, cancelled and deleted", func(t *testing.T) {
		e.t = t
		log := ctrl.log()
		logged := func(msg, request string) bool {
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"request":"`+request+`"`) &&
					strings.Contains(line, `"cluster":"internal"`) && strings.Contains(line, `"namespace":"`+controllerNS+`"`) &&
					strings.Contains(line, `"name":"`) {
					return true
				}
			}
			return false
		}
		for _, want := range [][2]string{
			{"created PipelineRun", "tenant-a/metrics-1"}, {"deleted PipelineRun", "tenant-a/metrics-1"},
			{"created PipelineRun", "tenant-a/metrics-deleted"}, {"cancelled PipelineRun", "tenant-a/metrics-deleted"},
			{"deleted PipelineRun", "tenant-a/metrics-deleted"},
		} {
			if !logged(want[0], want[1]) {
				t.Errorf("no %q line for %s with cluster, namespace, name and request", want[0], want[1])
			}
		}
		if logged("created PipelineRun", "tenant-b/metrics-denied") {
			t.Errorf("a PipelineRun was logged as created for a rejected request")
		}
	})
}
