package eventstore

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SyncQueueLen bounds every batch a reader may request on a Dial connection.
const SyncQueueLen = 1024

// Dial connects to NATS the way every Leadflow process does: reconnecting
// forever (a server restart is an outage to ride out, not a crash) and
// with a synchronous queue sized to the largest batch a Leadflow reader
// asks for (Load's direct-get batches, consumer fetches): the default
// allocates a 64k-slot channel for every short request, and anything
// smaller than a batch drops replies as a slow consumer.
func Dial(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.SyncQueueLen(SyncQueueLen),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
