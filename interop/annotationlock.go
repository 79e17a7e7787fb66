package main

// A resourcelock.Interface that keeps the election record in an annotation of a ConfigMap, the
// form Go electors wrote before client-go dropped its own ConfigMap lock (v0.27) and that older
// operators still use. The interop test runs client-go's elector on it, then checks that the
// Rust ConfigMap lock reads the record a Go elector wrote and takes over correctly.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The annotation that holds the record, as JSON.
const leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"

type annotationLock struct {
	configMaps corev1client.ConfigMapInterface
	name       string
	identity   string
	// The object as this lock last read or wrote it: an update replaces exactly that version
	// (its resourceVersion), so a concurrent writer makes the update fail with a conflict.
	seen *v1.ConfigMap
}

func newAnnotationLock(client corev1client.CoreV1Interface, namespace, name, identity string) *annotationLock {
	return &annotationLock{configMaps: client.ConfigMaps(namespace), name: name, identity: identity}
}

func (l *annotationLock) Get(ctx context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	object, err := l.configMaps.Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	l.seen = object
	raw := []byte(object.Annotations[leaderAnnotation])
	record := &rl.LeaderElectionRecord{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, record); err != nil {
			return nil, nil, fmt.Errorf("the annotation %s of ConfigMap %s is not a record: %w", leaderAnnotation, l.name, err)
		}
	}
	return record, raw, nil
}

func (l *annotationLock) Create(ctx context.Context, record rl.LeaderElectionRecord) error {
	raw, err := json.Marshal(record)
	if err != nil {
		return err
	}
	object := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name:        l.name,
		Annotations: map[string]string{leaderAnnotation: string(raw)},
	}}
	created, err := l.configMaps.Create(ctx, object, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	l.seen = created
	return nil
}

func (l *annotationLock) Update(ctx context.Context, record rl.LeaderElectionRecord) error {
	if l.seen == nil {
		return errors.New("update before the ConfigMap was read or created")
	}
	raw, err := json.Marshal(record)
	if err != nil {
		return err
	}
	next := l.seen.DeepCopy()
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[leaderAnnotation] = string(raw)
	updated, err := l.configMaps.Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	l.seen = updated
	return nil
}

// No event recorder in this test program.
func (l *annotationLock) RecordEvent(string) {}

func (l *annotationLock) Describe() string { return "configmap/" + l.name }

func (l *annotationLock) Identity() string { return l.identity }
