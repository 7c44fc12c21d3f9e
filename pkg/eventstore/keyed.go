package eventstore

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// A keyed command, one its caller may send again with the same key, stores
// an idempotency record after its events: a repeat finds the first answer
// with one read of the record and one of the event, however long the
// subject's history, and writes nothing. The record is only a short cut:
// the key is also on the events (idempotency_key), and a caller that
// finds no record reads the subject before it writes anything. So the
// record is sent without waiting for its answer, and costs the command
// no round trip. In one atomic commit with the events it would cost one
// on a cluster and forty on a one-replica file stream, where the server
// stages every atomic batch in a file store of its own
// (BenchmarkKeyedAppend, docs/operations.md).

// CommandKeySubject is the subject of the record of a caller's key for a
// command of service on one subject (a lead): claim.command.<UUIDv5>, so
// the key's text is not in the subject and every (service, subject, key)
// has its own record.
func CommandKeySubject(service, subject, key string) string {
	return ClaimSubject("command", uuid.NewSHA1(commandKeyNamespace, []byte(service+"\x00"+subject+"\x00"+key)).String())
}

// commandKeyNamespace is fixed forever: subjects derive from it.
var commandKeyNamespace = uuid.MustParse("6c65616e-6466-4c6f-a763-6f6d6d616e64")

// AppendKeyed is Append, then sends the record of service's key on
// subject (at CommandKeySubject) without waiting for it: it names the
// commit's last event and the version it was appended at, and outcome
// (what the command did, for telling a key reused for another command).
// A record the server does not store (a crash, an outage, a key that has
// one) leaves the key to the events (see above).
func (s *Store) AppendKeyed(ctx context.Context, service, subject string, expected uint64, key, outcome string, events ...*eventv1.Event) (uint64, error) {
	seq, err := s.Append(ctx, subject, expected, events...)
	if err != nil || len(events) == 0 {
		return seq, err
	}
	keySubject := CommandKeySubject(service, subject, key)
	rec := Write{Subject: keySubject, RecordID: uuid.NewSHA1(commandKeyNamespace, []byte(keySubject)).String(),
		Record: &eventv1.IdempotencyRecord{LeadId: LeadID(subject), EventId: events[len(events)-1].GetEventId(),
			VersionBefore: expected, Outcome: outcome}}
	if m, err := rec.msg(); err == nil {
		_, _ = s.js.PublishMsgAsync(m)
	}
	return seq, nil
}

// RememberKey stores the record of service's key on subject for a command
// that wrote nothing: its answer is the subject's event eventID at
// version. It waits for the server, since no event carries the key
// instead; a record the key has already is kept.
func (s *Store) RememberKey(ctx context.Context, service, subject, key, outcome string, version uint64, eventID string) error {
	keySubject := CommandKeySubject(service, subject, key)
	// Keyed reads the subject's first event after version_before: this
	// one. Expect 0 keeps a record already there.
	_, err := s.Commit(ctx, Write{Subject: keySubject, RecordID: uuid.NewSHA1(commandKeyNamespace, []byte(keySubject)).String(),
		Record: &eventv1.IdempotencyRecord{LeadId: LeadID(subject), EventId: eventID, VersionBefore: version - 1, Outcome: outcome}})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Keyed returns the first answer of service's key on subject, from the
// key's record: the record's outcome and the last event of its commit.
// found is false when the key has no record, or one that does not lead
// to its event (not written by AppendKeyed): the caller reads the
// subject then, as for a record not stored.
func (s *Store) Keyed(ctx context.Context, service, subject, key string) (outcome string, last Record, found bool, err error) {
	keySubject := CommandKeySubject(service, subject, key)
	got, err := s.Last(ctx, keySubject)
	if err != nil {
		return "", Record{}, false, err
	}
	raw, ok := got[keySubject]
	if !ok {
		return "", Record{}, false, nil
	}
	rec := &eventv1.IdempotencyRecord{}
	if err := proto.Unmarshal(raw.Data, rec); err != nil {
		return "", Record{}, false, nil
	}
	// The commit's events follow the version it was appended at: its
	// last one is at most MaxBatch messages of the subject later.
	after := rec.GetVersionBefore()
	for range MaxBatch {
		r, ok, err := s.NextEvent(ctx, subject, after)
		if err != nil || !ok {
			return "", Record{}, false, err
		}
		if r.Event.GetEventId() == rec.GetEventId() {
			return rec.GetOutcome(), r, true, nil
		}
		after = r.Seq
	}
	return "", Record{}, false, nil
}
