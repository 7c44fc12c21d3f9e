package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// rawFigures are plain JetStream operations on the same server, with
// payloads the size of a capture event.
type rawFigures struct {
	sync map[int]result // by concurrency
	// occ is sync publish to existing subjects spread over the stream, each
	// with the expected last subject sequence, as every event-store append
	// carries (the server then looks up the subject's last message).
	occ       result
	async     result
	batchMsgs result // messages/s through atomic batches of batchSize
	fastMsgs  result // messages/s through fast batches of fastBatchSize
	// importRows is rows/s of the floor of an imported row as Leadflow
	// stores it: one async create-only publish (expected last subject
	// sequence 0), the lead's first event. Its data key was stored ahead,
	// 1,024 to a message (pkg/vault), which the floor leaves out.
	importRows result
	fetchAck   result
}

const (
	batchSize     = 500
	fastBatchSize = 1000
)

func measureRaw(ctx context.Context, url string, size int, d time.Duration) (rawFigures, error) {
	nc, js, err := eventstore.Dial(url, "bench-raw")
	if err != nil {
		return rawFigures{}, err
	}
	defer nc.Close()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage,
		AllowAtomicPublish: true, AllowBatchPublish: true, AllowDirect: true}); err != nil {
		return rawFigures{}, err
	}
	data := make([]byte, size)
	var f rawFigures
	f.sync = map[int]result{}
	var n atomic.Int64
	for _, c := range concurrencies {
		f.sync[c] = timed(d, c, func() error {
			// One subject per lead, as the event store writes.
			_, err := js.Publish(ctx, "raw.s."+strconv.FormatInt(n.Add(1), 10), data)
			return err
		})
	}

	// Per-subject optimistic concurrency on existing subjects: 16 writers,
	// each owning 2,000 subjects written round-robin, so consecutive
	// writes to one subject lie far apart in the stream.
	const occWriters, occSubjects = 16, 2000
	last := make([][]uint64, occWriters)
	for w := range occWriters {
		last[w] = make([]uint64, occSubjects)
		for k := range occSubjects {
			if _, err := js.PublishAsync(fmt.Sprintf("raw.o.%d.%d", w, k), data); err != nil {
				return f, err
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return f, fmt.Errorf("occ setup timed out")
	}
	for w := range occWriters {
		for k := range occSubjects {
			m, err := js.Stream(ctx, "RAW")
			if err != nil {
				return f, err
			}
			msg, err := m.GetLastMsgForSubject(ctx, fmt.Sprintf("raw.o.%d.%d", w, k))
			if err != nil {
				return f, err
			}
			last[w][k] = msg.Sequence
		}
	}
	f.occ = timedEach(d, occWriters, func(w int) func() error {
		k := 0
		return func() error {
			subj := fmt.Sprintf("raw.o.%d.%d", w, k)
			ack, err := js.Publish(ctx, subj, data, jetstream.WithExpectLastSequencePerSubject(last[w][k]))
			if err != nil {
				return err
			}
			last[w][k] = ack.Sequence
			k = (k + 1) % occSubjects
			return nil
		}
	})

	// Async: one publisher keeping a window of acks in flight.
	start := time.Now()
	count := 0
	for time.Since(start) < d {
		for range 1000 {
			if _, err := js.PublishAsync("raw.a."+strconv.Itoa(count), data); err != nil {
				return f, err
			}
			count++
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
			return f, fmt.Errorf("async acks timed out")
		}
	}
	f.async = result{ops: count, elapsed: time.Since(start)}

	// The import row floor: a window of rows in flight, one create-only
	// publish each.
	start, count = time.Now(), 0
	for time.Since(start) < d {
		for range 500 {
			id := strconv.Itoa(count)
			if _, err := js.PublishAsync("raw.i."+id, data, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
				return f, err
			}
			count++
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
			return f, fmt.Errorf("import floor acks timed out")
		}
	}
	f.importRows = result{ops: count, elapsed: time.Since(start)}

	// Atomic batches, committed one after another.
	start, count = time.Now(), 0
	msgs := make([]*nats.Msg, batchSize)
	for time.Since(start) < d {
		for i := range msgs {
			msgs[i] = &nats.Msg{Subject: "raw.b." + strconv.Itoa(count+i), Data: data, Header: nats.Header{}}
		}
		if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs, jetstreamext.BatchFlowControl{AckFirst: false}); err != nil {
			return f, err
		}
		count += batchSize
	}
	f.batchMsgs = result{ops: count, elapsed: time.Since(start)}

	// Fast batches (allow_batched, server 2.14+): each message is stored as
	// it comes, the server acks every few, and the commit ends the batch.
	start, count = time.Now(), 0
	for time.Since(start) < d {
		fp, err := jetstreamext.NewFastPublisher(js)
		if err != nil {
			return f, err
		}
		for i := range fastBatchSize - 1 {
			if _, err := fp.Add("raw.f."+strconv.Itoa(count+i), data); err != nil {
				return f, fmt.Errorf("fast batch: %w", err)
			}
		}
		if _, err := fp.Commit(ctx, "raw.f."+strconv.Itoa(count+fastBatchSize-1), data); err != nil {
			return f, fmt.Errorf("fast batch commit: %w", err)
		}
		count += fastBatchSize
	}
	f.fastMsgs = result{ops: count, elapsed: time.Since(start)}

	// Fetch and ack everything published so far with one durable pull consumer.
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "fetchack", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return f, err
	}
	start, count = time.Now(), 0
	for time.Since(start) < d {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return f, err
		}
		got := 0
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				return f, err
			}
			got++
		}
		if got == 0 {
			break
		}
		count += got
	}
	f.fetchAck = result{ops: count, elapsed: time.Since(start)}
	return f, nil
}

var concurrencies = []int{1, 16, 64}

// timedEach is timed with one op per goroutine, made by mk(i).
func timedEach(d time.Duration, c int, mk func(i int) func() error) result {
	ops := make([]func() error, c)
	for i := range ops {
		ops[i] = mk(i)
	}
	var next atomic.Int64
	return timedPer(d, c, func() func() error { return ops[next.Add(1)-1] })
}

// timed runs op from c goroutines for d and records every latency.
func timed(d time.Duration, c int, op func() error) result {
	return timedPer(d, c, func() func() error { return op })
}

// timedPer is timed with each goroutine's op from opFor.
func timedPer(d time.Duration, c int, opFor func() func() error) result {
	var mu sync.Mutex
	var all []time.Duration
	var errs atomic.Int64
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			op := opFor()
			lat := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(stop) {
				t := time.Now()
				if err := op(); err != nil {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return newResult(all, time.Since(start), int(errs.Load()))
}
