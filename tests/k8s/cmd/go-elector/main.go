// go-elector runs client-go's leaderelection on a Lease exactly as the
// existing Go controller does through controller-runtime, so the tests can
// prove that it and internal-services never lead at once. It prints one
// line per event on stdout:
//
//	leading                 it holds the Lease
//	leader IDENTITY         it saw IDENTITY become the leader
//	stopped                 it no longer leads
//
// SIGTERM cancels it; with --release-on-cancel it gives the Lease up.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster holding the Lease")
	namespace := flag.String("namespace", "", "namespace of the Lease")
	name := flag.String("name", "b548bb9d.redhat.com", "name of the Lease")
	identity := flag.String("identity", "", "this candidate's identity")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "LeaseDuration")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "RenewDeadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "RetryPeriod")
	release := flag.Bool("release-on-cancel", false, "give the Lease up on SIGTERM")
	flag.Parse()
	if *kubeconfig == "" || *namespace == "" || *identity == "" {
		fmt.Fprintln(os.Stderr, "go-elector: --kubeconfig, --namespace and --identity are required")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("go-elector: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("go-elector: %v", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, *namespace, *name,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: *identity})
	if err != nil {
		log.Fatalf("go-elector: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	say := func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
		_ = os.Stdout.Sync()
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: *release,
		Name:            *name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { say("leading") },
			OnStoppedLeading: func() { say("stopped") },
			OnNewLeader:      func(id string) { say("leader %s", id) },
		},
	})
}
