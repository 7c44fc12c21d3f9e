package dashboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/services/projector/dashboard"
)

// Two replicas share their notices over NATS: a batch one commits reaches
// the pages of the other, once, and is not echoed back; a change every
// replica sees for itself (Refresh) stays local.
func TestLiveNoticesReachTheOtherReplicas(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const subject = "leadflow.projector.live.TEST"
	replica := func() (*dashboard.Live, <-chan dashboard.Notice) {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l := dashboard.NewLive(20 * time.Millisecond)
		if err := l.Share(nc, subject); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the subscription is in place
			t.Fatal(err)
		}
		go l.Run(ctx)
		ch, stop := dashboard.Subscribe(l)
		t.Cleanup(stop)
		return l, ch
	}
	a, pageA := replica()
	b, pageB := replica()

	a.Changed(42)
	for _, page := range []<-chan dashboard.Notice{pageA, pageB} {
		select {
		case n := <-page:
			if n.Seq != 42 {
				t.Errorf("notice %+v, want seq 42", n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a page was not told of the commit")
		}
	}
	quiet := func(what string, page <-chan dashboard.Notice) {
		t.Helper()
		select {
		case n := <-page:
			t.Errorf("%s: %+v", what, n)
		case <-time.After(500 * time.Millisecond):
		}
	}
	quiet("the commit came back to the replica that made it", pageA)
	quiet("a second notice for one commit", pageB)

	b.Refresh()
	select {
	case <-pageB:
	case <-time.After(5 * time.Second):
		t.Fatal("Refresh did not reach the replica's own page")
	}
	quiet("a Refresh was relayed", pageA)
}
