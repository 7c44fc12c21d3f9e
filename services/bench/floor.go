package main

// The floor of a consuming stage: what a stage that does nothing but
// fetch a lead event, append one event to that lead with per-lead
// optimistic concurrency, and ack, reaches on the same server. It is
// plain nats.go JetStream, no Leadflow code, shaped like qualification:
//
//   - a backlog of lead-like messages on lead.<p>.<uuid> (p = FNV-1a 32 of
//     the uuid mod eventstore.Partitions), several events per lead, written
//     round by round so one lead's events lie far apart in the stream;
//   - 64 workers in one process, a lead always on the same worker (FNV-1a
//     of the subject), fed by pulls of 256 from pinned durables with
//     MaxAckPending 64 each, as pkg/consume's defaults are (the one durable
//     holds as many as the 16 do together);
//   - per trigger message, one publish to its own subject with
//     WithExpectLastSequencePerSubject(the subject's last sequence, which the
//     worker knows: no read), then an ack;
//   - the appended messages fall in the durables' filter too, and are
//     fetched and acked unread, as qualification does with its own events.
//
// It runs once with one durable on lead.> and once with one durable per
// partition on lead.<p>.>, each on a fresh stream deleted afterwards (the
// stream takes lead.>, so this runs before the services create theirs).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

var (
	floorOn      = flag.Bool("floor", true, "measure the floor of a consuming stage (fetch + ack + one expected-sequence append per message)")
	floorEvents  = flag.Int("floor-events", 50_000, "backlog of the consuming-stage floor, in lead events")
	floorPerLead = flag.Int("floor-per-lead", 4, "events per lead in the floor's backlog")
	floorBound   = flag.Duration("floor-bound", 12*time.Second, "bound on each floor drain")
	floorOnly    = flag.Bool("floor-only", false, "run only the consuming-stage floor")
)

const (
	floorStream     = "FLOOR"
	floorWorkers    = 64  // qualification's -workers default
	floorFetch      = 256 // pkg/consume's pull
	floorFetchWait  = 500 * time.Millisecond
	floorMaxAck     = consume.DefaultMaxHeld // per durable, as qualification's group holds
	floorPinGroup   = "floor"
	floorHeaderType = "Lf-Type"
	floorTrigger    = "LeadCaptured"
	floorOwn        = "LeadScored"
	floorEarlier    = "LeadResubmitted"
	floorOpTimeout  = 5 * time.Second
	floorAsyncChunk = 2000
)

// floorShape is the concurrency of the stage a floor stands for: workers
// and messages held unacked per durable, as its consumer group runs them.
// lastOnly: only each lead's last backlog message triggers an append, the
// earlier ones are fetched and acked unread (routing acts on a lead's
// LeadQualified, after its capture and score); a trigger is then a lead.
type floorShape struct {
	workers, maxAck int
	lastOnly        bool
}

// scoringShape is qualification's.
var scoringShape = floorShape{workers: floorWorkers, maxAck: floorMaxAck}

// floorRun is one drain of the floor's backlog.
type floorRun struct {
	shape     floorShape
	durables  int
	triggers  int // backlog messages handled: fetched, appended to, acked
	own       int // appended messages fetched and acked
	appends   int // appends that succeeded
	errs      int
	firstErr  error
	elapsed   time.Duration
	cut       bool // stopped by -floor-bound
	appendP99 time.Duration
}

// rate is backlog events handled per second, the unit of the scoring figure.
func (r floorRun) rate() float64 { return layPer(r.triggers, r.elapsed) }

type floorFigures struct {
	events, leads, size int
	single, parts       floorRun
	took                time.Duration // the whole floor: loads, drains, deletes
}

func measureFloor(ctx context.Context, url string, size int) (f floorFigures, err error) {
	f = floorFigures{size: size}
	began := time.Now()
	defer func() { f.took = time.Since(began) }()
	per := max(*floorPerLead, 1)
	f.leads = max(*floorEvents/per, 1)
	f.events = f.leads * per
	nc, err := nats.Connect(url, nats.Name("bench-floor"), nats.SyncQueueLen(1024))
	if err != nil {
		return f, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return f, err
	}
	ids := make([]string, f.leads)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	for _, durables := range []int{1, eventstore.Partitions} {
		r, err := floorOnce(ctx, js, ids, per, data, durables, scoringShape)
		if err != nil {
			return f, fmt.Errorf("%d durables: %w", durables, err)
		}
		if durables == 1 {
			f.single = r
		} else {
			f.parts = r
		}
	}
	return f, nil
}

func floorPartition(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % eventstore.Partitions)
}

func floorOnce(ctx context.Context, js jetstream.JetStream, ids []string, per int, data []byte, durables int, shape floorShape) (r floorRun, err error) {
	r.durables, r.shape = durables, shape
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: floorStream, Subjects: []string{"lead.>"},
		Storage: jetstream.FileStorage, AllowDirect: true}); err != nil {
		return r, err
	}
	defer func() {
		if derr := js.DeleteStream(context.WithoutCancel(ctx), floorStream); derr != nil && err == nil {
			err = derr
		}
	}()

	// The backlog, round by round across all leads; last[i] ends as lead
	// i's last sequence, the expectation of its first append.
	subj := make([]string, len(ids))
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		subj[i] = "lead." + strconv.Itoa(floorPartition(id)) + "." + id
		index[subj[i]] = i
	}
	last := make([]uint64, len(ids))
	type pending struct {
		i   int
		fut jetstream.PubAckFuture
	}
	var futs []pending
	flush := func() error {
		for _, p := range futs {
			select {
			case ack := <-p.fut.Ok():
				last[p.i] = max(last[p.i], ack.Sequence)
			case err := <-p.fut.Err():
				return err
			case <-time.After(30 * time.Second):
				return errors.New("backlog load timed out")
			}
		}
		futs = futs[:0]
		return nil
	}
	for round := range per {
		typ := floorTrigger
		if shape.lastOnly && round < per-1 {
			typ = floorEarlier
		}
		for i := range ids {
			fut, err := js.PublishMsgAsync(&nats.Msg{Subject: subj[i], Data: data, Header: nats.Header{floorHeaderType: []string{typ}}})
			if err != nil {
				return r, err
			}
			if futs = append(futs, pending{i, fut}); len(futs) >= floorAsyncChunk {
				if err := flush(); err != nil {
					return r, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return r, err
	}

	conss := make([]jetstream.Consumer, durables)
	for p := range conss {
		cc := jetstream.ConsumerConfig{Durable: "floor", FilterSubject: "lead.>", AckPolicy: jetstream.AckExplicitPolicy,
			MaxAckPending: shape.maxAck, PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{floorPinGroup},
			PinnedTTL: 6 * time.Second}
		if durables == 1 {
			cc.MaxAckPending = shape.maxAck * eventstore.Partitions
		} else {
			cc.Durable = fmt.Sprintf("floor_p%02d", p)
			cc.FilterSubject = "lead." + strconv.Itoa(p) + ".>"
		}
		if conss[p], err = js.CreateOrUpdateConsumer(ctx, floorStream, cc); err != nil {
			return r, err
		}
	}

	var (
		triggers, earlier, own, appends, errs atomic.Int64
		firstErr                              atomic.Pointer[error]
		doneOnce                              sync.Once
		mu                                    sync.Mutex
		lats                                  []time.Duration
	)
	done := make(chan struct{})
	want, wantEarlier := int64(len(ids)*per), int64(0)
	if shape.lastOnly {
		want, wantEarlier = int64(len(ids)), int64(len(ids)*(per-1))
	}
	// finished: every backlog message handled and every append fetched back.
	finished := func() bool {
		return triggers.Load() == want && earlier.Load() == wantEarlier && own.Load() == appends.Load()
	}
	queues := make([]chan jetstream.Msg, shape.workers)
	for w := range queues {
		queues[w] = make(chan jetstream.Msg, shape.maxAck*durables)
	}
	var workers sync.WaitGroup
	for _, q := range queues {
		workers.Go(func() {
			lat := make([]time.Duration, 0, 1<<12)
			for m := range q {
				if m.Headers().Get(floorHeaderType) == floorTrigger {
					i := index[m.Subject()] // read only; last[i] belongs to this worker
					t := time.Now()
					c, cancel := context.WithTimeout(ctx, floorOpTimeout)
					ack, err := js.PublishMsg(c, &nats.Msg{Subject: m.Subject(), Data: data, Header: nats.Header{floorHeaderType: []string{floorOwn}}},
						jetstream.WithExpectLastSequencePerSubject(last[i]))
					cancel()
					if err != nil {
						// Not handled: an error, not a trigger, so the
						// drain never finishes and is cut at -floor-bound.
						firstErr.CompareAndSwap(nil, &err)
						errs.Add(1)
						_ = m.Ack()
						continue
					}
					lat = append(lat, time.Since(t))
					last[i] = ack.Sequence
					appends.Add(1)
					_ = m.Ack()
					triggers.Add(1)
				} else if m.Headers().Get(floorHeaderType) == floorEarlier {
					_ = m.Ack()
					earlier.Add(1)
				} else {
					_ = m.Ack()
					own.Add(1)
				}
				if finished() {
					doneOnce.Do(func() { close(done) })
				}
			}
			mu.Lock()
			lats = append(lats, lat...)
			mu.Unlock()
		})
	}
	dispatch := func(m jetstream.Msg) {
		h := fnv.New32a()
		h.Write([]byte(m.Subject()))
		queues[h.Sum32()%uint32(len(queues))] <- m
	}

	fctx, stop := context.WithCancel(ctx)
	var fetchers sync.WaitGroup
	start := time.Now()
	for _, cons := range conss {
		fetchers.Go(func() {
			for fctx.Err() == nil {
				b, err := cons.Fetch(floorFetch, jetstream.FetchMaxWait(floorFetchWait), jetstream.FetchPriorityGroup(floorPinGroup))
				if err != nil {
					if fctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
						errs.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				for m := range b.Messages() {
					dispatch(m)
				}
			}
		})
	}
	t := time.NewTimer(*floorBound)
	select {
	case <-done:
	case <-t.C:
		r.cut = true
	}
	t.Stop()
	r.elapsed = time.Since(start)
	r.triggers, r.own, r.appends = int(triggers.Load()), int(own.Load()), int(appends.Load())
	stop()
	fetchers.Wait()
	for _, q := range queues {
		close(q)
	}
	workers.Wait()
	r.errs = int(errs.Load())
	if e := firstErr.Load(); e != nil {
		r.firstErr = *e
	}
	if res := newResult(lats, r.elapsed, 0); res.ops > 0 {
		r.appendP99 = res.p99
	}
	return r, nil
}

func (f floorFigures) print(w io.Writer, scoring float64) {
	fmt.Fprintf(w, "  consuming-stage floor (raw nats.go, same server, measured first on a fresh stream): per event a fetch (pulls of %d,\n", floorFetch)
	fmt.Fprintf(w, "    MaxAckPending %d per pinned partition durable, as qualification's group, %d on the one durable), one append to its lead subject\n", floorMaxAck, floorMaxAck*eventstore.Partitions)
	fmt.Fprintf(w, "    with expected last subject seq, and an ack;\n")
	fmt.Fprintf(w, "    %d workers (qualification's), a lead on one worker; the appended events are fetched and acked too. Backlog %d events (%d leads x %d,\n",
		floorWorkers, f.events, f.leads, f.events/max(f.leads, 1))
	fmt.Fprintf(w, "    interleaved), %d B, lead.<p>.<uuid>; took %s:\n", f.size, f.took.Round(100*time.Millisecond))
	for _, r := range []floorRun{f.single, f.parts} {
		label := "1 durable on lead.>"
		if r.durables > 1 {
			label = fmt.Sprintf("%d partition durables", r.durables)
		}
		vs := ""
		if scoring > 0 {
			vs = "   scoring/floor " + ratio(scoring, r.rate())
		}
		fmt.Fprintf(w, "    %-22s %8.0f events/s  append p99 %s%s\n", label, r.rate(), ms(r.appendP99), vs)
		if r.cut {
			fmt.Fprintf(w, "      cut at %s: %d/%d events, %d/%d appended events fetched back\n", *floorBound, r.triggers, f.events, r.own, r.appends)
		}
		if r.errs > 0 {
			fmt.Fprintf(w, "      %d errors, first: %v\n", r.errs, r.firstErr)
		}
	}
}
