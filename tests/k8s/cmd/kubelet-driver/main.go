// kubelet-driver plays the kubelet for the Pods that Tekton creates on a
// test bed that has no nodes. Everything else is real Tekton: TaskRuns,
// PipelineRuns, resolution, parameter substitution, results propagation,
// cancellation and timeouts. The driver only writes Pod status, as a kubelet
// would after running the containers:
//
//  1. Running: every init container terminated with exit code 0, every
//     step container running.
//  2. Once the steps' time has passed: Succeeded, or Failed from the first
//     step that exits non-zero, with every container terminated (exit code,
//     reason, start and finish times) and each step's termination message
//     in the format Tekton's entrypoint writes: a JSON array of
//     {"key","value","type"}, type 1 for a task result, the value always a
//     JSON string (an array or object result is its JSON text).
//
// What a step does is read from its container's environment, which Tekton
// fills from the step's `env` after substituting params:
//
//	BED_STEP_RESULTS    JSON object, result name -> value (string, array or object)
//	BED_STEP_EXIT_CODE  the step's exit code (default 0)
//	BED_STEP_DURATION   how long the step runs, a Go duration (default 0)
//	BED_STEP_HANG       "true": the step never ends (until the Pod is deleted)
//
// A termination message is cut at 4096 bytes, as the kubelet cuts it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// The kubelet's cap on a termination message.
const maxTerminationMessage = 4096

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster whose Pods to play")
	namespace := flag.String("namespace", "", "namespace to watch (default: all)")
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "kubelet-driver: --kubeconfig is required")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubelet-driver: %v", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("kubelet-driver: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	d := &driver{client: client, ctx: ctx, pods: map[types.UID]*podRun{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(*namespace))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { d.seen(obj) },
		UpdateFunc: func(_, obj interface{}) { d.seen(obj) },
		DeleteFunc: func(obj interface{}) { d.gone(obj) },
	})
	factory.Start(ctx.Done())
	log.Printf("kubelet-driver: playing the kubelet for Pods in %q", *namespace)
	<-ctx.Done()
}

type driver struct {
	client kubernetes.Interface
	ctx    context.Context
	mu     sync.Mutex
	pods   map[types.UID]*podRun
}

// podRun is one Pod being played; its goroutine owns the Pod's status.
type podRun struct {
	cancel context.CancelFunc
}

func (d *driver) seen(obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.DeletionTimestamp != nil {
		return
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, running := d.pods[pod.UID]; running {
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	d.pods[pod.UID] = &podRun{cancel: cancel}
	go d.run(ctx, pod.DeepCopy())
}

func (d *driver) gone(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.pods[pod.UID]; r != nil {
		r.cancel()
		delete(d.pods, pod.UID)
	}
}

// step is what one container was told to do.
type step struct {
	name     string
	exitCode int32
	duration time.Duration
	hang     bool
	results  map[string]json.RawMessage
}

func envOf(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func parseStep(c corev1.Container) (step, error) {
	s := step{name: c.Name}
	env := envOf(c)
	if v := env["BED_STEP_EXIT_CODE"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return s, fmt.Errorf("BED_STEP_EXIT_CODE %q: %v", v, err)
		}
		s.exitCode = int32(n)
	}
	if v := env["BED_STEP_DURATION"]; v != "" {
		dur, err := time.ParseDuration(v)
		if err != nil {
			return s, fmt.Errorf("BED_STEP_DURATION %q: %v", v, err)
		}
		s.duration = dur
	}
	s.hang = env["BED_STEP_HANG"] == "true"
	if v := env["BED_STEP_RESULTS"]; v != "" {
		if err := json.Unmarshal([]byte(v), &s.results); err != nil {
			return s, fmt.Errorf("BED_STEP_RESULTS is not a JSON object: %v", err)
		}
	}
	return s, nil
}

// terminationMessage is what Tekton's entrypoint writes for a step.
func (s step) terminationMessage(started time.Time) string {
	type runResult struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		Type  int    `json:"type"`
	}
	out := []runResult{{Key: "StartedAt", Value: started.UTC().Format(time.RFC3339Nano), Type: 3}}
	names := make([]string, 0, len(s.results))
	for k := range s.results {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		raw := s.results[k]
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			str = string(raw) // an array or object result travels as its JSON text
		}
		out = append(out, runResult{Key: k, Value: str, Type: 1})
	}
	b, _ := json.Marshal(out)
	if len(b) > maxTerminationMessage {
		b = b[:maxTerminationMessage]
	}
	return string(b)
}

func (d *driver) run(ctx context.Context, pod *corev1.Pod) {
	name := pod.Namespace + "/" + pod.Name
	var steps []step
	for _, c := range pod.Spec.Containers {
		s, err := parseStep(c)
		if err != nil {
			log.Printf("kubelet-driver: %s container %s: %v (run as a plain step)", name, c.Name, err)
		}
		steps = append(steps, s)
	}
	start := time.Now()
	if err := d.writeStatus(ctx, pod, func(st *corev1.PodStatus) { running(pod, st, start) }); err != nil {
		log.Printf("kubelet-driver: %s: %v", name, err)
		return
	}
	log.Printf("kubelet-driver: %s running", name)

	// Steps run one after another; the first that fails ends the Pod and
	// the later ones never start, as Tekton's entrypoint orders them.
	finished := make([]time.Time, len(steps))
	began := make([]time.Time, len(steps))
	at := start
	failed := -1
	for i, s := range steps {
		began[i] = at
		if s.hang {
			log.Printf("kubelet-driver: %s step %s holds until the Pod is deleted", name, s.name)
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at.Add(s.duration))):
		}
		at = time.Now()
		finished[i] = at
		if s.exitCode != 0 {
			failed = i
			break
		}
	}
	err := d.writeStatus(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodSucceeded
		if failed >= 0 {
			st.Phase = corev1.PodFailed
		}
		st.Conditions = podConditions(false, at)
		st.ContainerStatuses = nil
		for i, s := range steps {
			cs := corev1.ContainerStatus{Name: s.name, Image: pod.Spec.Containers[i].Image, ImageID: "bed://" + pod.Spec.Containers[i].Image}
			switch {
			case failed >= 0 && i > failed:
				// Never started: Tekton's entrypoint skips the steps after a failure.
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
					StartedAt: metav1.NewTime(at), FinishedAt: metav1.NewTime(at),
					Message: `[{"key":"Reason","value":"Skipped","type":3}]`}
			default:
				reason := "Completed"
				if s.exitCode != 0 {
					reason = "Error"
				}
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: s.exitCode, Reason: reason,
					StartedAt: metav1.NewTime(began[i]), FinishedAt: metav1.NewTime(finished[i]),
					Message: s.terminationMessage(began[i])}
			}
			st.ContainerStatuses = append(st.ContainerStatuses, cs)
		}
	})
	if err != nil {
		log.Printf("kubelet-driver: %s: %v", name, err)
		return
	}
	log.Printf("kubelet-driver: %s ended %s", name, map[bool]string{true: "Failed", false: "Succeeded"}[failed >= 0])
}

func podConditions(ready bool, t time.Time) []corev1.PodCondition {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.NewTime(t)
	return []corev1.PodCondition{
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
}

func running(pod *corev1.Pod, st *corev1.PodStatus, start time.Time) {
	now := metav1.NewTime(start)
	st.Phase = corev1.PodRunning
	st.StartTime = &now
	st.HostIP, st.PodIP = "127.0.0.1", "127.0.0.1"
	st.Conditions = podConditions(true, start)
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "bed://" + c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		started := true
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "bed://" + c.Image, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

// writeStatus applies change to the Pod's latest status and writes it,
// retrying on conflicts (Tekton annotates the same Pod meanwhile) and, as a
// kubelet does, through an API server that is away (restarted, unreachable)
// until the Pod is gone or the driver stops.
func (d *driver) writeStatus(ctx context.Context, pod *corev1.Pod, change func(*corev1.PodStatus)) error {
	pods := d.client.CoreV1().Pods(pod.Namespace)
	for {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			if cur.UID != pod.UID {
				return fmt.Errorf("replaced by another Pod of the same name")
			}
			change(&cur.Status)
			_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		}
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			continue
		case ctx.Err() != nil:
			return err
		}
		log.Printf("kubelet-driver: %s/%s: %v (retrying)", pod.Namespace, pod.Name, err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
