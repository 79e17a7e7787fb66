package main

// A resourcelock.Interface that passes every call to another lock and prints one line per
// Get, Create and Update with its outcome. The benchmark reads these lines to count the
// requests client-go's elector makes and to know when a leader last renewed.

import (
	"context"
	"time"

	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

type reportingLock struct {
	rl.Interface
	election string
}

// report prints one call: its operation, when it was sent ("sent", unix nanos), whether it
// succeeded and, for writes, the holder the written record names.
func (l *reportingLock) report(op string, sent time.Time, holder string, err error) {
	emit(map[string]any{"event": "call", "name": l.election, "identity": l.Identity(),
		"op": op, "sent": sent.UnixNano(), "holder": holder, "ok": err == nil})
}

func (l *reportingLock) Get(ctx context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	sent := time.Now()
	record, raw, err := l.Interface.Get(ctx)
	l.report("get", sent, "", err)
	return record, raw, err
}

func (l *reportingLock) Create(ctx context.Context, record rl.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.Interface.Create(ctx, record)
	l.report("create", sent, record.HolderIdentity, err)
	return err
}

func (l *reportingLock) Update(ctx context.Context, record rl.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.Interface.Update(ctx, record)
	l.report("update", sent, record.HolderIdentity, err)
	return err
}
