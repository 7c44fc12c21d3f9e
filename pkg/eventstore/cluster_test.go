package eventstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// replicatedLead starts three nodes with the lead stream on three
// replicas and appends one event ("before") to a new lead.
func replicatedLead(t *testing.T) (c *testenv.Cluster, ctx context.Context, stream jetstream.Stream, s *eventstore.Store, lead string, version uint64) {
	t.Helper()
	c = testenv.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	stream, err := eventstore.EnsureStream(ctx, c.JS, eventstore.StreamConfig{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream has %d replicas, want 3", r)
	}
	s = eventstore.New(c.JS, "")
	lead = uuid.NewString()
	version, err = s.Append(ctx, eventstore.LeadSubject(lead), 0, activity(t, lead, "before"))
	if err != nil {
		t.Fatal(err)
	}
	return c, ctx, stream, s, lead, version
}

// details are the activities' details of recs, in order.
func details(recs []eventstore.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Event.GetActivityRecorded().GetDetail())
	}
	return out
}

// On three nodes with three replicas, a lead keeps its history and its
// optimistic concurrency (the replicated refusal is another error code)
// when the stream's leader stops, and again when the next leader stops
// after the first came back: the returning node caught up, or the stream
// would have no quorum.
func TestReplicatedStreamOutlivesItsLeaders(t *testing.T) {
	c, ctx, stream, s, lead, version := replicatedLead(t)
	subj := eventstore.LeadSubject(lead)
	var err error
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
	recs, err := s.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if got := details(recs); !slices.Equal(got, want) || recs[len(recs)-1].Seq != version {
		t.Fatalf("history %q, want %q at version %d", got, want, version)
	}
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

// A command reads the state it decides on, and on a replicated stream
// any replica answers a direct get, a follower a moment behind among them
// (under load, by many messages: it serves direct gets while it is 90%
// caught up). A load through any node must still see every acknowledged
// write: a command that followed another (a Convert after its Accept)
// would otherwise be refused on data the follower has not applied yet,
// and a consumer that reloads a lead would decide on a history without
// the event it was handed.
func TestLoadSeesEveryWriteThroughAnyNode(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := eventstore.EnsureStream(ctx, c.JS, eventstore.StreamConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	w := eventstore.New(c.JS, "")
	// One checked append before the flood: nats-server 2.15.2 makes the
	// leader's map of checked subjects on the first one, unlocked against
	// its apply loop, which -race reports when applies are running.
	first := uuid.NewString()
	if _, err := w.Append(ctx, eventstore.LeadSubject(first), 0, activity(t, first, "first")); err != nil {
		t.Fatal(err)
	}
	// Load: a flood of appends on other leads for as long as the test reads.
	data, err := proto.Marshal(activity(t, uuid.NewString(), "filler"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.JS.PublishAsync(eventstore.LeadSubject(uuid.NewString()), data); err != nil {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); <-flooded }()
	var readers []*eventstore.Store
	for i := range c.Nodes {
		nc, js, err := eventstore.Dial(c.URL(i), "reader")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		readers = append(readers, eventstore.New(js, ""))
	}
	// Each read right after its write, through the nodes in turn, one
	// kind a write: a load, the subject's version (how a cache of model or
	// routing data learns it is stale), the subject's next message (how a
	// commit whose answer was lost is found) and a get by sequence.
	var stale, reads [4]int
	for n, end := 0, time.Now().Add(6*time.Second); time.Now().Before(end); n++ {
		lead := uuid.NewString()
		subj := eventstore.LeadSubject(lead)
		version, err := w.Append(ctx, subj, 0, activity(t, lead, "probe"))
		if err != nil {
			t.Fatal(err)
		}
		r, kind := readers[(n/len(stale))%len(readers)], n%len(stale)
		reads[kind]++
		switch kind {
		case 0:
			recs, err := r.Load(ctx, subj)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Seq != version {
				stale[kind]++
			}
		case 1:
			if v, err := r.Version(ctx, subj); err != nil {
				t.Fatal(err)
			} else if v != version {
				stale[kind]++
			}
		case 2:
			if next, ok, err := r.Next(ctx, subj, 0); err != nil {
				t.Fatal(err)
			} else if !ok || next.Seq != version {
				stale[kind]++
			}
		case 3:
			if _, err := r.Get(ctx, version); errors.Is(err, jetstream.ErrMsgNotFound) {
				stale[kind]++
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	if stale != [4]int{} {
		t.Fatalf("read right after their write through any node, these missed it: %d of %d loads, %d of %d versions, %d of %d next-message gets, %d of %d gets by sequence",
			stale[0], reads[0], stale[1], reads[1], stale[2], reads[2], stale[3], reads[3])
	}
}

// What a replicated stream's reads cost: a subject's last message by a
// direct get (any replica answers, the nearest first) against the stream
// API's get, which the leader answers, as Store.Version does there.
//
//	go test -run '^$' -bench ReplicatedLast ./eventstore/
func BenchmarkReplicatedLast(b *testing.B) {
	c := testenv.StartCluster(b, 3)
	ctx := context.Background()
	stream, err := eventstore.EnsureStream(ctx, c.JS, eventstore.StreamConfig{Replicas: 3})
	if err != nil {
		b.Fatal(err)
	}
	s := eventstore.New(c.JS, "")
	subjects := make([]string, 1000)
	for i := range subjects {
		lead := uuid.NewString()
		subjects[i] = eventstore.LeadSubject(lead)
		if _, err := s.Append(ctx, subjects[i], 0, activity(b, lead, "x")); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("direct get", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := stream.GetLastMsgForSubject(ctx, subjects[i%len(subjects)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("leader get", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Version(ctx, subjects[i%len(subjects)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// stopFollowers stops every node of c but the stream's leader, the
// stream left without a quorum, and returns them.
func stopFollowers(t *testing.T, ctx context.Context, c *testenv.Cluster, stream jetstream.Stream) []int {
	t.Helper()
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	leader := c.Node(info.Cluster.Leader)
	var followers []int
	for i := range c.Nodes {
		if i != leader {
			followers = append(followers, i)
			c.StopNode(i)
		}
	}
	return followers
}

// A commit of two events is one atomic batch, without a message id: its
// retry after a timed-out attempt that is still being replicated is
// refused, as a batch on that subject is in process, whatever is stored.
// That refusal is no conflict: the first attempt is stored once a
// follower is back, and the commit reports it stored, not lost.
func TestABatchStillReplicatingIsNoConflict(t *testing.T) {
	c, ctx, stream, s, lead, version := replicatedLead(t)
	subj := eventstore.LeadSubject(lead)
	followers := stopFollowers(t, ctx, c, stream)
	// Past an attempt's 2 s, within the leader's 10 s without quorum.
	storedWhenAFollowerReturns(t, c, followers[0], s, subj, version, 3*time.Second, activity(t, lead, "one"), activity(t, lead, "two"))
}

// The same writes sent again after an unknown outcome, while that first
// batch still waits for its replicas, are answered with the version it
// is stored at once through: the leader refuses them meanwhile, and that
// refusal is no conflict (nothing else moved the lead).
func TestResentWritesWaitForTheirBatch(t *testing.T) {
	c, ctx, stream, s, lead, version := replicatedLead(t)
	subj := eventstore.LeadSubject(lead)
	followers := stopFollowers(t, ctx, c, stream)
	one, two := activity(t, lead, "one"), activity(t, lead, "two")
	actx, acancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := s.Append(actx, subj, version, one, two)
	acancel()
	if !errors.Is(err, eventstore.ErrUnknownOutcome) {
		t.Fatalf("the first try without a quorum: %v, want an unknown outcome", err)
	}
	storedWhenAFollowerReturns(t, c, followers[0], s, subj, version, time.Second, one, two)
}

// storedWhenAFollowerReturns appends events at version on subj, starts
// follower after wait (the stream back to a quorum), and checks that the
// append answers with the version its events are stored at, after the
// lead's one event before them.
func storedWhenAFollowerReturns(t *testing.T, c *testenv.Cluster, follower int, s *eventstore.Store, subj string, version uint64,
	wait time.Duration, events ...*eventv1.Event) {
	t.Helper()
	type result struct {
		v   uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer acancel()
		v, err := s.Append(actx, subj, version, events...)
		done <- result{v, err}
	}()
	time.Sleep(wait)
	c.StartNode(t, follower)
	r := <-done
	if r.err != nil {
		t.Fatalf("the commit: %v, want it found stored", r.err)
	}
	recs, err := s.Load(context.Background(), subj)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"before"}
	for _, ev := range events {
		want = append(want, ev.GetActivityRecorded().GetDetail())
	}
	if got := details(recs); !slices.Equal(got, want) || recs[len(recs)-1].Seq != r.v {
		t.Fatalf("history %q at %d, want %q at the commit's version %d", got, recs[len(recs)-1].Seq, want, r.v)
	}
}
