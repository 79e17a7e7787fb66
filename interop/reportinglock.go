package main

// A resourcelock.Interface that passes every call to another lock and prints one line per
// Get, Create and Update with its outcome. The benchmark reads these lines to count the
// requests client-go's elector makes and to know when a leader last renewed.

import (
	"context"

	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

type reportingLock struct {
	rl.Interface
	election string
}

func (l *reportingLock) report(op string, err error) {
	emit(map[string]any{"event": "call", "name": l.election, "identity": l.Identity(), "op": op, "ok": err == nil})
}

func (l *reportingLock) Get(ctx context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	record, raw, err := l.Interface.Get(ctx)
	l.report("get", err)
	return record, raw, err
}

func (l *reportingLock) Create(ctx context.Context, record rl.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, record)
	l.report("create", err)
	return err
}

func (l *reportingLock) Update(ctx context.Context, record rl.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, record)
	l.report("update", err)
	return err
}
