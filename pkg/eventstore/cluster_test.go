package eventstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// On three nodes with three replicas, a lead keeps its history and its
// optimistic concurrency (the replicated refusal is another error code)
// when the stream's leader stops, and again when the next leader stops
// after the first came back: the returning node caught up, or the stream
// would have no quorum. Reads may trail: any replica answers a direct get,
// and a follower applies a commit a moment after it is acknowledged.
func TestReplicatedStreamOutlivesItsLeaders(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := eventstore.EnsureStream(ctx, c.JS, eventstore.StreamConfig{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream has %d replicas, want 3", r)
	}
	s := eventstore.New(c.JS, "")
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	version, err := s.Append(ctx, subj, 0, activity(t, lead, "before"))
	if err != nil {
		t.Fatal(err)
	}
	stale := func() {
		t.Helper()
		_, err := s.Append(ctx, subj, 0, activity(t, lead, "stale"))
		var ce *eventstore.ConflictError
		if !errors.As(err, &ce) || ce.Actual == 0 || ce.Actual > version {
			t.Fatalf("stale append: want a conflict at version %d (or one a replica still reads), got %v", version, err)
		}
	}
	stale()

	// stop stops the stream's leader, or when that is the node spared,
	// another one.
	stop := func(spare int) int {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil || info.Cluster == nil {
			t.Fatalf("stream info: %v", err)
		}
		i := c.Node(info.Cluster.Leader)
		if i < 0 {
			t.Fatalf("leader %q is none of the nodes", info.Cluster.Leader)
		}
		if i == spare {
			i = (i + 1) % len(c.Nodes)
		}
		c.StopNode(i)
		return i
	}
	first := stop(-1)
	if version, err = s.Append(ctx, subj, version, activity(t, lead, "leader 1 gone")); err != nil {
		t.Fatalf("append after the leader stopped: %v", err)
	}
	stale()

	c.StartNode(t, first)
	testenv.Eventually(t, time.Minute, func() bool {
		info, err := stream.Info(ctx)
		if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
		return true
	}, "node %d never caught up", first)
	stop(first)
	if version, err = s.Append(ctx, subj, version, activity(t, lead, "node 1 back, another gone")); err != nil {
		t.Fatalf("append after the second leader stopped: %v", err)
	}
	want := []string{"before", "leader 1 gone", "node 1 back, another gone"}
	var details []string
	testenv.Eventually(t, 10*time.Second, func() bool {
		recs, err := s.Load(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		details = details[:0]
		for _, r := range recs {
			details = append(details, r.Event.GetActivityRecorded().GetDetail())
		}
		// A trailing replica answers a prefix of the history, never a gap.
		if !slices.Equal(details, want[:min(len(details), len(want))]) {
			t.Fatalf("history %q is not a prefix of %q", details, want)
		}
		return len(recs) == len(want) && recs[len(recs)-1].Seq == version
	}, "history %q, want %q at version %d", details, want, version)
	stale()
}

// A process starting while the cluster has no quorum waits for it, as a
// service whose node is restarting must, instead of exiting.
func TestEnsureWaitsForAQuorum(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	c.StopNode(1)
	c.StopNode(2)
	done := make(chan error, 1)
	go func() {
		_, err := eventstore.EnsureStream(context.Background(), c.JS, eventstore.StreamConfig{Replicas: 3})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("EnsureStream returned without a quorum: %v", err)
	case <-time.After(7 * time.Second): // longer than one API call's timeout
	}
	c.StartNode(t, 1)
	c.StartNode(t, 2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("EnsureStream once the quorum is back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("EnsureStream still waiting a minute after the quorum came back")
	}
}
