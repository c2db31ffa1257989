// soak is the load of bench/soak: it creates InternalRequests at a steady
// rate on the remote cluster, deletes each one once it has finished (as its
// owner would, so that the steady state holds a bounded number of
// requests), and prints the controller's resident set size every minute.
//
//	soak --kubeconfig remote.kubeconfig --request request.json --pid PID [--rate 10] [--minutes 10] [--max-in-flight 300]
//
// The request is an InternalRequest as JSON; each copy gets a name of its
// own. Every line it prints starting with FIGURE is machine-readable.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

var irGVR = schema.GroupVersionResource{Group: "appstudio.redhat.com", Version: "v1alpha1", Resource: "internalrequests"}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				return strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func finished(obj *unstructured.Unstructured) (bool, string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]interface{}); ok && m["type"] == "Succeeded" {
			if s := fmt.Sprint(m["status"]); s == "True" || s == "False" {
				return true, fmt.Sprint(m["reason"])
			}
		}
	}
	return false, ""
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the remote cluster (admin)")
	requestFile := flag.String("request", "", "the InternalRequest to create, as JSON")
	pid := flag.Int("pid", 0, "the controller's process id")
	rate := flag.Float64("rate", 10, "requests created per second")
	minutes := flag.Int("minutes", 10, "how long the load runs")
	drain := flag.Duration("drain", 2*time.Minute, "how long to wait for the last requests after the load")
	maxInFlight := flag.Int("max-in-flight", 300, "create nothing while this many requests are unfinished")
	flag.Parse()
	if *kubeconfig == "" || *requestFile == "" || *pid <= 0 || *rate <= 0 || *minutes <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	raw, err := os.ReadFile(*requestFile)
	if err != nil {
		log.Fatal(err)
	}
	var template map[string]interface{}
	if err := json.Unmarshal(raw, &template); err != nil {
		log.Fatalf("%s: %v", *requestFile, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	base := &unstructured.Unstructured{Object: template}
	ns := base.GetNamespace()
	res := client.Resource(irGVR).Namespace(ns)
	ctx := context.Background()

	var created, createErrors, done, failed, held atomic.Int64
	start := time.Now()
	rss0, err := rssKiB(*pid)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("soak: %.0f requests/s for %d min into %s, controller pid %d\n", *rate, *minutes, ns, *pid)
	fmt.Printf("minute  rss_kib  created  finished  failed  in_flight  held\n")
	fmt.Printf("%6d  %7d  %7d  %8d  %6d  %9d  %4d\n", 0, rss0, 0, 0, 0, 0, 0)
	fmt.Printf("FIGURE soak_rss_0 %d KiB\n", rss0)

	// The reaper deletes finished requests.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			list, err := res.List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range list.Items {
				obj := &list.Items[i]
				if obj.GetDeletionTimestamp() != nil || !strings.HasPrefix(obj.GetName(), "soak-") {
					continue
				}
				if ok, reason := finished(obj); ok {
					if err := res.Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); err == nil || apierrors.IsNotFound(err) {
						done.Add(1)
						if reason != "Succeeded" {
							failed.Add(1)
						}
					}
				}
			}
		}
	}()

	// The RSS every minute, through the load and the drain.
	var peak atomic.Int64
	peak.Store(rss0)
	line := func(label string) {
		rss, err := rssKiB(*pid)
		if err != nil {
			log.Fatalf("the controller is gone: %v", err)
		}
		if rss > peak.Load() {
			peak.Store(rss)
		}
		c, d := created.Load()-createErrors.Load(), done.Load()
		fmt.Printf("%6s  %7d  %7d  %8d  %6d  %9d  %4d\n", label, rss, c, d, failed.Load(), c-d, held.Load())
		fmt.Printf("FIGURE soak_rss_%s %d KiB\n", strings.TrimSpace(label), rss)
	}
	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		for minute := 1; ; minute++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(minute) * time.Minute))):
			}
			line(strconv.Itoa(minute))
		}
	}()

	// The load, at a steady rate; each create in its own goroutine so a
	// slow answer does not lower the rate. A tick finding max-in-flight
	// requests unfinished creates none (counted as held): when Tekton
	// finishes fewer runs than the rate, the backlog stays bounded.
	interval := time.Duration(float64(time.Second) / *rate)
	end := start.Add(time.Duration(*minutes) * time.Minute)
	tick := time.NewTicker(interval)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		if created.Load()-createErrors.Load()-done.Load() >= int64(*maxInFlight) {
			held.Add(1)
			continue
		}
		n := created.Add(1)
		go func(n int64) {
			obj := base.DeepCopy()
			obj.SetName(fmt.Sprintf("soak-%06d", n))
			obj.SetResourceVersion("")
			if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				createErrors.Add(1)
			}
		}(n)
	}
	tick.Stop()
	loadTime := time.Since(start)
	deadline := time.Now().Add(*drain)
	for done.Load() < created.Load()-createErrors.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()
	<-reporterDone
	line("end")
	c, d := created.Load()-createErrors.Load(), done.Load()
	fmt.Printf("FIGURE soak_rss_peak %d KiB\n", peak.Load())
	fmt.Printf("FIGURE soak_rate %.2f requests/s\n", float64(c)/loadTime.Seconds())
	fmt.Printf("FIGURE soak_requests %d count\n", c)
	fmt.Printf("FIGURE soak_create_errors %d count\n", createErrors.Load())
	fmt.Printf("FIGURE soak_unfinished %d count\n", c-d)
}
