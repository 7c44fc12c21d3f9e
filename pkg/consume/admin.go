package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// DeadLetter is a message a group gave up on, with the later messages of its
// key that wait behind it.
type DeadLetter struct {
	Group string `json:"group"`
	// Key is the parked key (a lead id); Redrive and Skip take it.
	Key       string `json:"key"`
	Partition int    `json:"partition"`
	Stream    string `json:"stream,omitempty"`
	// StreamSeq is the dead message's sequence; it stays in its stream. 0
	// when only parked messages are left (their dead letter was dropped and
	// the release did not finish; the partition's owner releases them).
	StreamSeq uint64 `json:"stream_seq"`
	Subject   string `json:"subject,omitempty"`
	Error     string `json:"error,omitempty"`
	Attempts  int    `json:"attempts"`
	// At is when the message was first dead-lettered: a re-drive that
	// fails again keeps it, as the key stayed parked.
	At time.Time `json:"at,omitzero"`
	// Parked are the stream sequences of the key's later messages, in order.
	Parked []uint64 `json:"parked"`
}

// DeadLetters lists every dead letter and parked key in deadLetterStream,
// of every group, by group and key. A missing stream means there are none.
// Without a deadline on ctx it gets 10 seconds.
func DeadLetters(ctx context.Context, js jetstream.JetStream, deadLetterStream string) ([]DeadLetter, error) {
	ctx, cancel := deadline.Default(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consume: dead letters: %w", err)
	}
	entries, err := streamSubjects(ctx, s, entryPrefix+"*.*")
	if err != nil {
		return nil, err
	}
	parked, err := streamSubjects(ctx, s, parkedPrefix+"*.*.*")
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	at := map[string]int{} // group.key -> index in out
	err = lastOf(ctx, js, deadLetterStream, entries, func(m *jetstream.RawStreamMsg) {
		group, key, _ := strings.Cut(strings.TrimPrefix(m.Subject, entryPrefix), ".")
		e := parseEntry(m.Header)
		at[group+"."+key] = len(out)
		out = append(out, DeadLetter{Group: group, Key: key, Partition: e.partition, Stream: e.stream,
			StreamSeq: e.streamSeq, Subject: e.subject, Error: e.err, Attempts: e.attempts, At: e.at})
	})
	if err != nil {
		return nil, fmt.Errorf("consume: dead letters: %w", err)
	}
	var orphans []string          // a parked subject of each key without an entry
	for _, subj := range parked { // sorted by subject, so by key, not by seq
		group, _, _ := strings.Cut(strings.TrimPrefix(subj, parkedPrefix), ".")
		key, seq, ok := parseParked(subj, group)
		if !ok {
			continue
		}
		i, found := at[group+"."+key]
		if !found {
			i = len(out)
			at[group+"."+key] = i
			out = append(out, DeadLetter{Group: group, Key: key})
			orphans = append(orphans, subj)
		}
		out[i].Parked = append(out[i].Parked, seq)
	}
	// A key with parked messages and no entry (its release cut short):
	// its partition and stream are on each parked message.
	err = lastOf(ctx, js, deadLetterStream, orphans, func(m *jetstream.RawStreamMsg) {
		group, _, _ := strings.Cut(strings.TrimPrefix(m.Subject, parkedPrefix), ".")
		key, _, _ := parseParked(m.Subject, group)
		e := parseEntry(m.Header)
		out[at[group+"."+key]].Partition, out[at[group+"."+key]].Stream = e.partition, e.stream
	})
	if err != nil {
		return nil, fmt.Errorf("consume: dead letters: %w", err)
	}
	for i := range out {
		// A dead message still listed as parked (a member died between
		// storing it as the dead letter and deleting its parked record) is
		// the dead letter only: a re-drive or skip settles it once.
		out[i].Parked = slices.DeleteFunc(out[i].Parked, func(seq uint64) bool { return seq == out[i].StreamSeq })
		slices.Sort(out[i].Parked)
	}
	return out, nil
}

// Redrive asks the group to handle key's dead message again and then the
// messages parked behind it, in order. The request is stored: the member
// that owns the key's partition serves it, now or when it next runs. A
// message that fails again becomes the key's dead letter.
//
// seq names the dead message (its StreamSeq, as DeadLetters listed it):
// the request then acts only on that one. If the key's dead letter is
// another message by now (a re-drive failed again, a later one died) it
// returns an error wrapping ErrOtherDeadLetter, and a request that finds
// another one when it is served does nothing. 0 means whatever the key's
// dead letter is when the request is served.
//
// Messages of key parked behind a dead letter already gone (a member
// killed between deleting it and releasing them) are released in order,
// whatever seq names. It returns an error wrapping ErrNotFound when the
// group has neither a dead letter nor parked messages for key. Without a
// deadline on ctx it gets 10 seconds.
func Redrive(ctx context.Context, js jetstream.JetStream, deadLetterStream, group, key string, seq uint64) error {
	return ask(ctx, js, deadLetterStream, group, key, opRedrive, seq)
}

// Skip asks the group to drop key's dead message without handling it, then
// handle the messages parked behind it, in order. seq and errors are as
// Redrive's.
func Skip(ctx context.Context, js jetstream.JetStream, deadLetterStream, group, key string, seq uint64) error {
	return ask(ctx, js, deadLetterStream, group, key, opSkip, seq)
}

func ask(ctx context.Context, js jetstream.JetStream, deadLetterStream, group, key, op string, seq uint64) error {
	if err := checkToken("group", group); err != nil {
		return err
	}
	if err := checkToken("key", key); err != nil {
		return err
	}
	ctx, cancel := deadline.Default(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, err)
	}
	// From the leader, as the member serving the request reads it.
	m, err := eventstore.LeaderLast(ctx, js, deadLetterStream, entrySubject(group, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return askRelease(ctx, js, s, deadLetterStream, group, key, op)
	}
	if err != nil {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, err)
	}
	e := parseEntry(m.Header)
	if seq != 0 && e.streamSeq != seq {
		return fmt.Errorf("consume: %s %s %s seq %d: %w: it is seq %d now", op, group, key, seq, ErrOtherDeadLetter, e.streamSeq)
	}
	// A request stored after the entry (a later sequence of the same
	// stream) is not served yet: serving deletes the entry, or replaces it
	// when the message fails again. Served requests are deleted.
	for attempt := 0; ; attempt++ {
		var prevSeq uint64
		prev, err := s.GetLastMsgForSubject(ctx, requestSubject(group, key))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("consume: %s %s %s: %w", op, group, key, err)
		default:
			prevSeq = prev.Sequence
			if pop := prev.Header.Get(hdrOp); (pop == opRedrive || pop == opSkip) && pop != op && prev.Sequence > m.Sequence {
				return fmt.Errorf("consume: %s %s %s: %w: a %s asked at %s; ask again once it is served", op, group, key, ErrRequestPending,
					pop, prev.Time.UTC().Format(time.RFC3339))
			}
		}
		// Stored only if no other request came since it looked: two
		// operators asking at once do not replace each other's unseen. A
		// request served (and deleted) meanwhile is looked at again.
		err = publishRequest(ctx, js, deadLetterStream, group, key, op, e.partition, seq, jetstream.WithExpectLastSequencePerSubject(prevSeq))
		if err == nil {
			return nil
		}
		if !eventstore.IsWrongLastSequence(err) || attempt == 2 {
			return fmt.Errorf("consume: %s %s %s: %w (another request may have come at the same moment: ask again)", op, group, key, err)
		}
	}
}

// Served waits until group holds no re-drive or skip request of key (a
// request is deleted once served: its dead letter handled or dropped and
// what was parked behind it released), reading the leader every 200 ms,
// or until ctx ends. How it went, DeadLetters tells.
func Served(ctx context.Context, js jetstream.JetStream, deadLetterStream, group, key string) error {
	for {
		_, err := eventstore.LeaderLast(ctx, js, deadLetterStream, requestSubject(group, key))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("consume: served %s %s: %w", group, key, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// askRelease asks for the release of key's parked messages whose dead
// letter is gone (a member killed between deleting it and releasing what
// waited behind it): there is nothing left to re-drive or skip, and the
// partition's owner would otherwise release them only on its next
// take-over. Without parked messages it is ErrNotFound.
func askRelease(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, deadLetterStream, group, key, op string) error {
	parked, err := streamSubjects(ctx, s, parkedPrefix+group+"."+key+".*")
	if err != nil {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, err)
	}
	if len(parked) == 0 {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, ErrNotFound)
	}
	m, err := s.GetLastMsgForSubject(ctx, parked[0])
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // released meanwhile
	}
	if err != nil {
		return fmt.Errorf("consume: %s %s %s: %w", op, group, key, err)
	}
	partition, _ := strconv.Atoi(m.Header.Get(hdrPartition))
	if err := publishRequest(ctx, js, deadLetterStream, group, key, opRelease, partition, 0); err != nil {
		return fmt.Errorf("consume: %s %s %s: release parked: %w", op, group, key, err)
	}
	return nil
}

// HeldBack counts the keys group holds back: each with a dead letter, or
// with parked messages whose release has not finished. A missing stream
// holds none. Without a deadline on ctx it gets 10 seconds.
func HeldBack(ctx context.Context, js jetstream.JetStream, deadLetterStream, group string) (int, error) {
	if err := checkToken("group", group); err != nil {
		return 0, err
	}
	ctx, cancel := deadline.Default(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("consume: held back by %s: %w", group, err)
	}
	keys := map[string]bool{}
	for _, filter := range []string{entryPrefix + group + ".*", parkedPrefix + group + ".*.*"} {
		subjects, err := streamSubjects(ctx, s, filter)
		if err != nil {
			return 0, err
		}
		for _, subj := range subjects {
			key, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(subj, entryPrefix+group+"."), parkedPrefix+group+"."), ".")
			keys[key] = true
		}
	}
	return len(keys), nil
}

// RemoveGroup deletes a group's durables on stream (partitions of them), its
// request consumer on deadLetterStream and everything it keeps there, for a
// group that is done (a finished re-score): with no member left to serve a
// re-drive, a dead letter it left would be listed for ever. Missing ones
// are fine. A caller that must not lose one checks HeldBack first.
func RemoveGroup(ctx context.Context, js jetstream.JetStream, stream, deadLetterStream, group string, partitions int) error {
	ctx, cancel := deadline.Default(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	del := func(stream, name string) {
		if err := js.DeleteConsumer(ctx, stream, name); err != nil &&
			!errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, err)
		}
	}
	for p := range max(partitions, 1) {
		del(stream, Durable(group, p, partitions))
	}
	del(deadLetterStream, redriveConsumer(group))
	if err := checkToken("group", group); err != nil {
		errs = append(errs, err)
	} else if s, err := js.Stream(ctx, deadLetterStream); err == nil {
		for _, prefix := range []string{entryPrefix, parkedPrefix, requestPrefix, startedPrefix} {
			if err := s.Purge(ctx, jetstream.WithPurgeSubject(prefix+group+".>")); err != nil {
				errs = append(errs, err)
			}
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consume: remove group %s: %w", group, err)
	}
	return nil
}
