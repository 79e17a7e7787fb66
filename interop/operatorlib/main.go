// Command operatorlib runs operator-lib's leader-for-life election (leader.Become) so that tests
// can check that the Rust ForLifeLock and operator-lib exclude each other on the same ConfigMap.
//
// The Pod is the one POD_NAME names in the namespace POD_NAMESPACE (set them as the downward
// API would). operator-lib reads the namespace only from the service account's namespace file,
// which exists only inside a Pod; this program points that lookup at POD_NAMESPACE instead.
//
// It prints one JSON object per line on stdout:
//
//	{"event":"trying","pod":"p-1","ts":<unix nanos>}         before calling leader.Become
//	{"event":"log","msg":"Not the leader. Waiting.","ts":...}  each message operator-lib logs
//	{"event":"leader","pod":"p-1","ts":...}                   leader.Become returned: leading
//	{"event":"error","error":"...","ts":...}                   leader.Become failed (exit 1)
//
// Once leading it blocks until SIGINT or SIGTERM; leadership ends with the Pod, as operator-lib
// intends (nothing is released).
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
	_ "unsafe" // for go:linkname

	"github.com/go-logr/logr/funcr"
	"github.com/operator-framework/operator-lib/leader"
	"k8s.io/client-go/tools/clientcmd"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// readNamespace is operator-lib's namespace lookup (a package variable it keeps for its own
// tests); main replaces it with one that reads POD_NAMESPACE.
//
//go:linkname readNamespace github.com/operator-framework/operator-lib/leader.readNamespace
var readNamespace func() (string, error)

var output sync.Mutex

func emit(fields map[string]any) {
	fields["ts"] = time.Now().UnixNano()
	line, _ := json.Marshal(fields)
	output.Lock()
	defer output.Unlock()
	fmt.Println(string(line))
}

func main() {
	// controller-runtime's config package already defines -kubeconfig on the command line.
	name := flag.String("name", "", "name of the lock ConfigMap")
	flag.Parse()
	pod := os.Getenv("POD_NAME")
	namespace := os.Getenv("POD_NAMESPACE")
	if *name == "" || pod == "" || namespace == "" {
		fmt.Fprintln(os.Stderr, "-name, POD_NAME and POD_NAMESPACE are required")
		os.Exit(2)
	}
	readNamespace = func() (string, error) { return namespace, nil }
	logf.SetLogger(funcr.New(func(prefix, args string) {
		emit(map[string]any{"event": "log", "msg": prefix + " " + args})
	}, funcr.Options{}))

	config, err := clientcmd.BuildConfigFromFlags("", flag.Lookup("kubeconfig").Value.String())
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeconfig: %v\n", err)
		os.Exit(1)
	}
	client, err := crclient.New(config, crclient.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	emit(map[string]any{"event": "trying", "pod": pod})
	if err := leader.Become(ctx, *name, leader.WithClient(client)); err != nil {
		emit(map[string]any{"event": "error", "error": err.Error()})
		os.Exit(1)
	}
	emit(map[string]any{"event": "leader", "pod": pod})
	<-ctx.Done()
}
