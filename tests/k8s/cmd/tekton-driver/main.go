// tekton-driver plays Tekton's PipelineRun controller on a test bed that has
// no kubelet: it writes PipelineRun status the way Tekton v1 does (a running
// state with startTime first, then the Succeeded condition, completionTime
// and results), so the controller under test sees the same objects it would
// see on a real cluster.
//
// What a run does is read from the Pipeline it references (the cluster
// resolver's name/namespace params), through annotations:
//
//	test.internal-services/outcome:  succeed (default), fail, or hang
//	test.internal-services/duration: how long it runs, a Go duration (default 1s)
//	test.internal-services/results:  JSON list of {"name","value"} where a
//	                                  string value may use $(params.NAME)
//
// A Pipeline that does not exist fails the run as Tekton does
// (CouldntGetPipeline); spec.status "Cancelled" ends it as Cancelled.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	prGVR       = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	pipelineGVR = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}
)

const annPrefix = "test.internal-services/"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the internal cluster")
	namespace := flag.String("namespace", "", "namespace whose PipelineRuns to drive")
	interval := flag.Duration("interval", 200*time.Millisecond, "how often to look at PipelineRuns")
	flag.Parse()
	if *kubeconfig == "" || *namespace == "" {
		fmt.Fprintln(os.Stderr, "tekton-driver: --kubeconfig and --namespace are required")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("tekton-driver: %v", err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("tekton-driver: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &driver{client: client, ns: *namespace}
	log.Printf("tekton-driver: driving PipelineRuns in %s", *namespace)
	for ctx.Err() == nil {
		d.pass(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(*interval):
		}
	}
}

type driver struct {
	client dynamic.Interface
	ns     string
}

func (d *driver) pass(ctx context.Context) {
	list, err := d.client.Resource(prGVR).Namespace(d.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		if ctx.Err() == nil {
			log.Printf("tekton-driver: list: %v", err)
		}
		return
	}
	for i := range list.Items {
		if err := d.drive(ctx, &list.Items[i]); err != nil && ctx.Err() == nil {
			log.Printf("tekton-driver: %s: %v", list.Items[i].GetName(), err)
		}
	}
}

func succeededCondition(pr *unstructured.Unstructured) map[string]interface{} {
	conds, _, _ := unstructured.NestedSlice(pr.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]interface{}); ok && m["type"] == "Succeeded" {
			return m
		}
	}
	return nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// drive moves one PipelineRun one step forward.
func (d *driver) drive(ctx context.Context, pr *unstructured.Unstructured) error {
	if c := succeededCondition(pr); c != nil && c["status"] != "Unknown" {
		return nil // done; Tekton never touches a finished run again
	}
	specStatus, _, _ := unstructured.NestedString(pr.Object, "spec", "status")
	switch specStatus {
	case "PipelineRunPending":
		return d.setStatus(ctx, pr, "Unknown", "PipelineRunPending", "PipelineRun \""+pr.GetName()+"\" is pending", false, nil)
	case "Cancelled", "CancelledRunFinally", "StoppedRunFinally":
		return d.setStatus(ctx, pr, "False", "Cancelled", "PipelineRun \""+pr.GetName()+"\" was cancelled", true, nil)
	}
	pipeline, err := d.pipeline(ctx, pr)
	if err != nil {
		msg := fmt.Sprintf("Error retrieving pipeline for pipelinerun %s/%s: %v", d.ns, pr.GetName(), err)
		return d.setStatus(ctx, pr, "False", "CouldntGetPipeline", msg, true, nil)
	}
	ann := pipeline.GetAnnotations()
	started, _, _ := unstructured.NestedString(pr.Object, "status", "startTime")
	if started == "" {
		return d.setStatus(ctx, pr, "Unknown", "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Skipped: 0", false, nil)
	}
	duration := time.Second
	if v := ann[annPrefix+"duration"]; v != "" {
		if duration, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("bad duration annotation %q: %v", v, err)
		}
	}
	start, err := time.Parse(time.RFC3339, started)
	if err != nil {
		return err
	}
	if time.Since(start) < duration {
		return nil
	}
	switch ann[annPrefix+"outcome"] {
	case "hang":
		return nil
	case "fail":
		return d.setStatus(ctx, pr, "False", "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0", true, nil)
	default:
		results, err := resultsFor(pr, ann[annPrefix+"results"])
		if err != nil {
			return err
		}
		return d.setStatus(ctx, pr, "True", "Succeeded", "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0", true, results)
	}
}

func (d *driver) pipeline(ctx context.Context, pr *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	resolver, _, _ := unstructured.NestedString(pr.Object, "spec", "pipelineRef", "resolver")
	params, _, _ := unstructured.NestedSlice(pr.Object, "spec", "pipelineRef", "params")
	byName := map[string]string{}
	for _, p := range params {
		if m, ok := p.(map[string]interface{}); ok {
			if s, ok := m["value"].(string); ok {
				byName[fmt.Sprint(m["name"])] = s
			}
		}
	}
	name := byName["name"]
	ns := byName["namespace"]
	if resolver != "cluster" {
		// Other resolvers fetch from outside; the bed resolves them by
		// the last path element of pathInRepo in this namespace.
		parts := strings.Split(strings.TrimSuffix(byName["pathInRepo"], ".yaml"), "/")
		name, ns = parts[len(parts)-1], d.ns
	}
	if name == "" {
		return nil, fmt.Errorf("no pipeline name in pipelineRef")
	}
	if ns == "" {
		ns = d.ns
	}
	return d.client.Resource(pipelineGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
}

// resultsFor expands the results annotation with the run's params, as the
// pipeline's tasks would have produced them from the same params.
func resultsFor(pr *unstructured.Unstructured, spec string) ([]interface{}, error) {
	if spec == "" {
		return nil, nil
	}
	var results []map[string]interface{}
	if err := json.Unmarshal([]byte(spec), &results); err != nil {
		return nil, fmt.Errorf("bad results annotation: %v", err)
	}
	params, _, _ := unstructured.NestedSlice(pr.Object, "spec", "params")
	var expand func(v interface{}) interface{}
	expand = func(v interface{}) interface{} {
		switch x := v.(type) {
		case string:
			for _, p := range params {
				if m, ok := p.(map[string]interface{}); ok {
					if pv, ok := m["value"].(string); ok {
						x = strings.ReplaceAll(x, "$(params."+fmt.Sprint(m["name"])+")", pv)
					}
				}
			}
			return x
		case []interface{}:
			for i := range x {
				x[i] = expand(x[i])
			}
			return x
		case map[string]interface{}:
			for k := range x {
				x[k] = expand(x[k])
			}
			return x
		}
		return v
	}
	out := make([]interface{}, 0, len(results))
	for _, r := range results {
		out = append(out, map[string]interface{}{"name": r["name"], "value": expand(r["value"])})
	}
	return out, nil
}

func (d *driver) setStatus(ctx context.Context, pr *unstructured.Unstructured, status, reason, message string,
	done bool, results []interface{}) error {
	if c := succeededCondition(pr); c != nil && c["status"] == status && c["reason"] == reason {
		return nil
	}
	st, _, _ := unstructured.NestedMap(pr.Object, "status")
	if st == nil {
		st = map[string]interface{}{}
	}
	t := now()
	if _, ok := st["startTime"]; !ok {
		st["startTime"] = t
	}
	st["conditions"] = []interface{}{map[string]interface{}{
		"type": "Succeeded", "status": status, "reason": reason, "message": message,
		"lastTransitionTime": t,
	}}
	if _, ok := st["childReferences"]; !ok {
		st["childReferences"] = []interface{}{}
	}
	if done {
		st["completionTime"] = t
	}
	if results != nil {
		st["results"] = results
	}
	pr.Object["status"] = st
	_, err := d.client.Resource(prGVR).Namespace(d.ns).UpdateStatus(ctx, pr, metav1.UpdateOptions{})
	return err
}
