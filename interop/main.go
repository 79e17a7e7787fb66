// Command interop runs client-go's leaderelection on a Lease (or on a ConfigMap annotation, the
// form older Go electors wrote) so that tests can hand leadership back and forth
// between Go and Rust electors on the same object.
//
// It prints one JSON object per line on stdout:
//
//	{"event":"leading","identity":"go-1","ts":<unix nanos>}   OnStartedLeading
//	{"event":"lost","identity":"go-1","ts":...}               the leading context ended
//	{"event":"new_leader","leader":"rust-2","ts":...}         OnNewLeader
//	{"event":"releasing","ts":...}                            SIGINT or SIGTERM arrived
//	{"event":"call","op":"update","sent":...,"holder":"go-1","ok":true,...}
//	                                                          with -report-calls: every lock call
//	{"event":"exiting","ts":...}                              Run returned
//
// With -names a,b,c the process takes part in several elections at once (one elector each,
// same identity); every line then carries "name", the election it is about.
//
// SIGINT or SIGTERM cancels the elections; with -release-on-cancel (the default) the lock is
// released as client-go releases it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
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
	names := flag.String("names", "", "comma-separated names of lock objects: one election each (instead of -name)")
	reportCalls := flag.Bool("report-calls", false, "print a line for every Get, Create and Update of the lock")
	identity := flag.String("identity", "", "this elector's identity")
	kind := flag.String("lock", "lease", "lease or configmap")
	leaseDuration := flag.Duration("lease-duration", 4*time.Second, "lease duration")
	renewDeadline := flag.Duration("renew-deadline", 3*time.Second, "renew deadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "retry period")
	releaseOnCancel := flag.Bool("release-on-cancel", true, "release the lock on SIGINT/SIGTERM")
	coordinated := flag.Bool("coordinated", false, "coordinated leader election: lead only when a coordinator names this identity as holder, stop renewing when the Lease names a preferredHolder")
	flag.Parse()
	elections := strings.Split(*names, ",")
	if *names == "" {
		elections = []string{*name}
	}
	if elections[0] == "" || *identity == "" {
		fmt.Fprintln(os.Stderr, "-name (or -names) and -identity are required")
		os.Exit(2)
	}

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeconfig: %v\n", err)
		os.Exit(1)
	}
	// Many elections may share this process' client: client-go's default client-side limit (5
	// requests per second) would queue their requests and slow every elector down.
	config.QPS = 1000
	config.Burst = 2000
	client := kubernetes.NewForConfigOrDie(config)
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		emit(map[string]any{"event": "releasing", "identity": *identity})
		cancel()
	}()

	var running sync.WaitGroup
	for _, election := range elections {
		lock, err := newLock(client, *kind, *namespace, election, *identity)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lock: %v\n", err)
			os.Exit(1)
		}
		if *reportCalls {
			lock = &reportingLock{Interface: lock, election: election}
		}
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   *leaseDuration,
			RenewDeadline:   *renewDeadline,
			RetryPeriod:     *retryPeriod,
			ReleaseOnCancel: *releaseOnCancel,
			Coordinated:     *coordinated,
			Name:            election,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leading context.Context) {
					emit(map[string]any{"event": "leading", "name": election, "identity": *identity})
					<-leading.Done()
					emit(map[string]any{"event": "lost", "name": election, "identity": *identity})
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(leader string) {
					emit(map[string]any{"event": "new_leader", "name": election, "identity": *identity, "leader": leader})
				},
			},
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "elector: %v\n", err)
			os.Exit(1)
		}
		running.Add(1)
		go func() {
			defer running.Done()
			elector.Run(ctx)
		}()
	}
	running.Wait()
	emit(map[string]any{"event": "exiting"})
}

// newLock makes the lock of one election: a Lease, or a ConfigMap annotation.
func newLock(client kubernetes.Interface, kind, namespace, name, identity string) (resourcelock.Interface, error) {
	switch kind {
	case "lease":
		return resourcelock.New(resourcelock.LeasesResourceLock, namespace, name,
			client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	case "configmap":
		return newAnnotationLock(client.CoreV1(), namespace, name, identity), nil
	default:
		return nil, fmt.Errorf("unknown -lock %q", kind)
	}
}
