package project

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// item is one message waiting for its batch to commit.
type item struct {
	m    msg
	done chan error
}

// batchTimeout bounds one batch's transaction, stream reads included.
const batchTimeout = 30 * time.Second

// Handle is a pkg/consume handler: it queues the message for the next
// batch and returns once that batch committed (nil) or failed. Every
// consumer worker blocked here adds its message to the same batch, so a
// batch holds up to Config.MaxBatch messages, one per lead, in one
// transaction. Run must be running.
func (p *Projector) Handle(ctx context.Context, m consume.Msg) error {
	it := &item{m: msg{seq: m.Seq, subject: m.Subject, time: m.Time, typ: m.Header.Get(eventstore.HeaderType), data: m.Data},
		done: make(chan error, 1)}
	select {
	case p.queue <- it:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.stopCh:
		return ErrStopped
	}
	select {
	case err := <-it.done:
		if unreachable(err) {
			return consume.Away(err)
		}
		return err
	case <-ctx.Done():
		// The batch may still commit; the redelivery will find it applied.
		return ctx.Err()
	case <-p.stopCh:
		// Run flushes nothing after it stopped; a message queued in the
		// meantime is failed here.
		select {
		case err := <-it.done:
			return err
		default:
			return ErrStopped
		}
	}
}

// Run commits queued messages in batches, Config.Flushers at once, until
// ctx is done, then fails what is still queued with ErrStopped. A batch
// running when ctx ends is finished (within its own timeout), not cut
// off. Call it once; stop the consumers feeding Handle first.
func (p *Projector) Run(ctx context.Context) error {
	defer p.stop()
	var wg sync.WaitGroup
	for range p.cfg.Flushers {
		wg.Go(func() { p.flushLoop(ctx) })
	}
	wg.Wait()
	return nil
}

// flushLoop commits batches, one at a time, until ctx is done. Batches of
// several loops run side by side and never share a subject, as pkg/consume
// hands a key's next message over only once Handle returned for the last
// (a message handed over again while its first batch still runs waits
// for that batch's row locks, then finds itself applied).
func (p *Projector) flushLoop(ctx context.Context) {
	for {
		var first *item
		select {
		case <-ctx.Done():
			return
		case first = <-p.queue:
		}
		batch := []*item{first}
	fill:
		for len(batch) < p.cfg.MaxBatch {
			select {
			case it := <-p.queue:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		p.flush(context.WithoutCancel(ctx), batch)
	}
}

// flush commits one batch. When the batch fails as a whole, each message
// is tried alone, so that one bad message fails only its own handler
// (and is retried, then dead-lettered, by pkg/consume).
func (p *Projector) flush(ctx context.Context, batch []*item) {
	msgs := make([]msg, len(batch))
	for i, it := range batch {
		msgs[i] = it.m
	}
	bctx, cancel := context.WithTimeout(ctx, batchTimeout)
	err := p.applyBatch(bctx, target{}, msgs)
	cancel()
	if err == nil || len(batch) == 1 {
		for _, it := range batch {
			it.done <- err
		}
		return
	}
	p.log.Warn("project: batch failed; applying its messages one by one", "messages", len(batch), "err", err)
	for _, it := range batch {
		bctx, cancel := context.WithTimeout(ctx, batchTimeout)
		it.done <- p.applyBatch(bctx, target{}, []msg{it.m})
		cancel()
	}
}

// stop marks p stopped and fails what is queued.
func (p *Projector) stop() {
	p.stopOnce.Do(func() { close(p.stopCh) })
	for {
		select {
		case it := <-p.queue:
			it.done <- ErrStopped
		default:
			return
		}
	}
}

// unreachable reports whether err says PostgreSQL could not be reached
// or went away (a restart, a failover, connections refused for a while),
// which is no message's doing: the consumer waits for it instead of
// dead-lettering every message in flight.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return true // refused, whatever it said (a database not accepting connections: 55000)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Connection exceptions; shutting down, starting, too many
		// connections (SQLSTATE classes 08, 57P, 53300).
		return strings.HasPrefix(pgErr.Code, "08") || slices.Contains([]string{"57P01", "57P02", "57P03", "53300"}, pgErr.Code)
	}
	// A timeout is not here: pkg/consume waits those out for a while
	// (eventstore.Unanswered), then counts them.
	var netErr net.Error
	return errors.As(err, &netErr) && !netErr.Timeout() ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}
