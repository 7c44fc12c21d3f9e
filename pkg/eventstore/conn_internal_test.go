package eventstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Asynchronous publishes whose answers never come (a subject whose only
// listener never replies, as a stream leader gone quiet) are given up in
// time: once the client's 4,000 pending slots filled, every later publish
// failed until a reconnect, which a live connection never makes.
func TestUnansweredPublishesDoNotStallTheConnection(t *testing.T) {
	defer func(d time.Duration) { asyncAnswerWait = d }(asyncAnswerWait)
	asyncAnswerWait = 500 * time.Millisecond
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ANSWERED", Subjects: []string{"answered.>"}}); err != nil {
		t.Fatal(err)
	}
	quiet, err := js.Conn().Subscribe("quiet.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Unsubscribe()
	for range 4000 {
		if _, err := js.PublishMsgAsync(nats.NewMsg("quiet.x")); err != nil {
			t.Fatalf("a publish while slots were free: %v", err)
		}
	}
	time.Sleep(2 * asyncAnswerWait)
	f, err := js.PublishAsync("answered.1", []byte("x"))
	if errors.Is(err, jetstream.ErrTooManyStalledMsgs) || err != nil {
		t.Fatalf("a publish after 4,000 went unanswered: %v", err)
	}
	select {
	case <-f.Ok():
	case err := <-f.Err():
		t.Fatalf("the answered publish: %v", err)
	case <-ctx.Done():
		t.Fatal("the answered publish got no answer")
	}
}
