package adapters

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/services/handoff/app"
)

var _ app.Loads = (*Loads)(nil)

// DefaultLoadsBucket is the KV bucket of reps' open leads.
const DefaultLoadsBucket = provision.LoadsBucket

// Loads keeps each rep's reserved leads in a KV bucket, one key per rep,
// changed by compare-and-set. A watcher keeps this process's copy, which
// routing reads to pick reps without a request per rep and changes with
// one compare-and-set, reading the bucket only after losing a race.
type Loads struct {
	kv     jetstream.KeyValue
	mu     sync.Mutex
	mirror map[string]loadEntry
}

type loadEntry struct {
	res app.Reservations
	rev uint64
}

// NewLoads opens the bucket, or creates it where the NATS user may
// (without users; pkg/provision makes it in production).
func NewLoads(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Loads, error) {
	if bucket == "" {
		bucket = DefaultLoadsBucket
	}
	kv, err := eventstore.EnsureKeyValue(ctx, js, provision.Loads(bucket, replicas))
	if err != nil {
		return nil, fmt.Errorf("loads bucket %s: %w", bucket, err)
	}
	return &Loads{kv: kv, mirror: map[string]loadEntry{}}, nil
}

// Watch keeps the counts current until ctx ends, watching again after a
// failure.
func (l *Loads) Watch(ctx context.Context, log *slog.Logger) {
	for ctx.Err() == nil {
		if err := l.watch(ctx); err != nil && ctx.Err() == nil {
			log.Warn("loads: watch", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (l *Loads) watch(ctx context.Context) error {
	w, err := l.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher stopped")
			}
			if e == nil {
				continue // the initial values are all in
			}
			res := app.Reservations{}
			if e.Operation() == jetstream.KeyValuePut {
				if res, err = decodeReservations(e.Value()); err != nil {
					return fmt.Errorf("loads %s: %w", e.Key(), err)
				}
			}
			l.seen(e.Key(), res, e.Revision())
		}
	}
}

func (l *Loads) seen(rep string, res app.Reservations, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev >= l.mirror[rep].rev {
		l.mirror[rep] = loadEntry{res: res, rev: rev}
	}
}

// Count is a rep's open leads as last seen.
func (l *Loads) Count(repID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mirror[repID].res)
}

// Get returns a rep's reservations: from this process's copy, or with
// fresh (or when it has none) from the bucket.
func (l *Loads) Get(ctx context.Context, repID string, fresh bool) (app.Reservations, uint64, error) {
	if !fresh {
		l.mu.Lock()
		e, ok := l.mirror[repID]
		l.mu.Unlock()
		if ok {
			return e.res, e.rev, nil
		}
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	e, err := l.kv.Get(ctx, repID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return app.Reservations{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("loads of %s: %w", repID, err)
	}
	res, err := decodeReservations(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("loads of %s: %w", repID, err)
	}
	l.seen(repID, res, e.Revision())
	return res, e.Revision(), nil
}

// A rep's reservations are stored as a version byte, then 24 bytes a
// lead: its id (a UUID) and when it was reserved (Unix milliseconds, big
// endian). Every replica's watcher decodes every change and each
// reservation writes the rep's whole set, so JSON took a sixth of the
// process's CPU (profiled); an id that is not a UUID falls back to JSON,
// which is also how values written before were stored.
const reservationsV1 = 1

func encodeReservations(r app.Reservations) ([]byte, error) {
	b := make([]byte, 1, 1+24*len(r))
	b[0] = reservationsV1
	for id, at := range r {
		u, err := uuid.Parse(id)
		if err != nil || u.String() != id {
			return encodeReservationsJSON(r)
		}
		b = append(b, u[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMilli()))
	}
	return b, nil
}

func encodeReservationsJSON(r app.Reservations) ([]byte, error) {
	raw := make(map[string]int64, len(r))
	for id, at := range r {
		raw[id] = at.UnixMilli()
	}
	return json.Marshal(raw)
}

func decodeReservations(b []byte) (app.Reservations, error) {
	if len(b) > 0 && b[0] == reservationsV1 {
		if (len(b)-1)%24 != 0 {
			return nil, fmt.Errorf("reservations: %d bytes is not a whole number of entries", len(b))
		}
		out := make(app.Reservations, (len(b)-1)/24)
		for e := b[1:]; len(e) > 0; e = e[24:] {
			out[uuid.UUID(e[:16]).String()] = time.UnixMilli(int64(binary.BigEndian.Uint64(e[16:24])))
		}
		return out, nil
	}
	var raw map[string]int64
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := make(app.Reservations, len(raw))
	for id, ms := range raw {
		out[id] = time.UnixMilli(ms)
	}
	return out, nil
}

// Put stores a rep's reservations if they are still at revision rev.
func (l *Loads) Put(ctx context.Context, repID string, r app.Reservations, rev uint64) error {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	b, err := encodeReservations(r)
	if err != nil {
		return err
	}
	var next uint64
	if rev == 0 {
		next, err = l.kv.Create(ctx, repID, b)
	} else {
		next, err = l.kv.Update(ctx, repID, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || eventstore.IsWrongLastSequence(err) {
		return app.ErrStale
	}
	if err != nil {
		return fmt.Errorf("loads of %s: %w", repID, err)
	}
	l.seen(repID, r, next)
	return nil
}
