package deadline_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/deadline"
)

func TestDefaultSetsDeadline(t *testing.T) {
	before := time.Now()
	ctx, cancel := deadline.Default(context.Background(), time.Minute)
	defer cancel()
	got, ok := ctx.Deadline()
	if !ok {
		t.Fatal("no deadline set")
	}
	if got.Before(before.Add(time.Minute)) || got.After(time.Now().Add(time.Minute)) {
		t.Fatalf("deadline %v, want a minute from %v", got, before)
	}
	cancel()
	if ctx.Err() == nil {
		t.Fatal("cancel did not cancel the context")
	}
}

func TestDefaultKeepsCallersDeadline(t *testing.T) {
	want := time.Now().Add(time.Hour)
	parent, stop := context.WithDeadline(context.Background(), want)
	defer stop()
	ctx, cancel := deadline.Default(parent, time.Second)
	if ctx != parent {
		t.Fatal("context replaced although the caller set a deadline")
	}
	if got, _ := ctx.Deadline(); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
	cancel()
	if ctx.Err() != nil {
		t.Fatal("cancel cancelled the caller's context")
	}
}
