package consume_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
)

// BenchmarkNoopHandler measures the reader itself: 100,000 messages of 256
// bytes on 1,000 keys in 4 partitions, a handler that does nothing. Each
// iteration reads the whole stream with a fresh durable; msgs/s counts from
// Run's start to the last message handled (setup included, shutdown not).
//
//	go test -run '^$' -bench NoopHandler -benchtime 3x ./consume/
func BenchmarkNoopHandler(b *testing.B) {
	const total, subjects = 100_000, 1_000
	n := startParts(b)
	nc, _ := n.Connect(b)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for i := range total {
		if _, err := js.PublishAsync(subject(fmt.Sprintf("K%04d", i%subjects)), payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}

	var handled atomic.Int64
	h := func(context.Context, consume.Msg) error {
		handled.Add(1)
		return nil
	}
	b.ResetTimer()
	for i := range b.N {
		handled.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- consume.Run(ctx, n.JS, config(fmt.Sprintf("bench%d", i)), h)
		}()
		deadline := time.Now().Add(2 * time.Minute)
		for handled.Load() < total {
			if time.Now().After(deadline) {
				b.Fatalf("handled %d of %d", handled.Load(), total)
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
