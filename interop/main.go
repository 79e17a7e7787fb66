// Command interop runs client-go's leaderelection on a Lease (or on a ConfigMap annotation, the
// form older Go electors wrote) so that tests can hand leadership back and forth
// between Go and Rust electors on the same object.
//
// It prints one JSON object per line on stdout:
//
//	{"event":"leading","identity":"go-1","ts":<unix nanos>}   OnStartedLeading
//	{"event":"lost","identity":"go-1","ts":...}               the leading context ended
//	{"event":"new_leader","leader":"rust-2","ts":...}         OnNewLeader
//	{"event":"exiting","ts":...}                              Run returned
//
// SIGINT or SIGTERM cancels the election; with -release-on-cancel (the default) the lock is
// released as client-go releases it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

var output sync.Mutex

func emit(fields map[string]any) {
	fields["ts"] = time.Now().UnixNano()
	line, _ := json.Marshal(fields)
	output.Lock()
	defer output.Unlock()
	fmt.Println(string(line))
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace of the lock object")
	name := flag.String("name", "", "name of the lock object")
	identity := flag.String("identity", "", "this elector's identity")
	kind := flag.String("lock", "lease", "lease or configmap")
	leaseDuration := flag.Duration("lease-duration", 4*time.Second, "lease duration")
	renewDeadline := flag.Duration("renew-deadline", 3*time.Second, "renew deadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "retry period")
	releaseOnCancel := flag.Bool("release-on-cancel", true, "release the lock on SIGINT/SIGTERM")
	flag.Parse()
	if *name == "" || *identity == "" {
		fmt.Fprintln(os.Stderr, "-name and -identity are required")
		os.Exit(2)
	}

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeconfig: %v\n", err)
		os.Exit(1)
	}
	client := kubernetes.NewForConfigOrDie(config)
	lockConfig := resourcelock.ResourceLockConfig{Identity: *identity}

	var lock resourcelock.Interface
	switch *kind {
	case "lease":
		lock, err = resourcelock.New(resourcelock.LeasesResourceLock, *namespace, *name,
			client.CoreV1(), client.CoordinationV1(), lockConfig)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lock: %v\n", err)
			os.Exit(1)
		}
	case "configmap":
		lock = newAnnotationLock(client.CoreV1(), *namespace, *name, *identity)
	default:
		fmt.Fprintf(os.Stderr, "unknown -lock %q\n", *kind)
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		cancel()
	}()

	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: *releaseOnCancel,
		Name:            *name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				emit(map[string]any{"event": "leading", "identity": *identity})
				<-leading.Done()
				emit(map[string]any{"event": "lost", "identity": *identity})
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(leader string) {
				emit(map[string]any{"event": "new_leader", "leader": leader})
			},
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "elector: %v\n", err)
		os.Exit(1)
	}
	elector.Run(ctx)
	emit(map[string]any{"event": "exiting"})
}
