package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned by Redrive for a dead letter that does not exist
// (any more) for the durable.
var ErrNotFound = errors.New("consume: dead letter not found")

// DeadLetter is a message a durable gave up on.
type DeadLetter struct {
	// Seq is the entry's sequence in the dead-letter stream; pass it to
	// Redrive. Dead-lettering the same message again gives it a new Seq.
	Seq     uint64
	Durable string
	Stream  string
	// StreamSeq is the original message's sequence; the message itself stays
	// in its stream.
	StreamSeq uint64
	Subject   string
	Error     string
	Attempts  int
	At        time.Time
}

// Subjects in the dead-letter stream. Entries and requests differ in their
// second token, so listing one durable's entries never sees a request.
const (
	deadLetterPrefix = "deadletter."
	entryPrefix      = deadLetterPrefix + "entry."
	redrivePrefix    = deadLetterPrefix + "redrive."
)

func entrySubject(durable, seq string) string   { return entryPrefix + durable + "." + seq }
func redriveSubject(durable, seq string) string { return redrivePrefix + durable + "." + seq }

// parseSeqSubject reads the sequence after prefix ("....<durable>.").
func parseSeqSubject(subject, prefix string) (uint64, bool) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	return seq, err == nil && seq > 0
}

// Headers of a dead-letter entry; its body is empty.
const (
	hdrDurable   = "Leadflow-Dead-Letter-Durable"
	hdrStream    = "Leadflow-Dead-Letter-Stream"
	hdrSubject   = "Leadflow-Dead-Letter-Subject"
	hdrStreamSeq = "Leadflow-Dead-Letter-Stream-Seq"
	hdrError     = "Leadflow-Dead-Letter-Error"
	hdrAttempts  = "Leadflow-Dead-Letter-Attempts"
	hdrTime      = "Leadflow-Dead-Letter-Time"
)

// maxErrorLen keeps an error text within what a header comfortably carries.
const maxErrorLen = 4096

type entry struct {
	durable   string // set when parsed
	stream    string
	subject   string
	streamSeq uint64
	err       string
	attempts  int
	at        time.Time
}

// publishEntry stores (or replaces: one message per subject) a dead letter
// and returns once the stream has it.
func (r *runner) publishEntry(ctx context.Context, e entry) error {
	m := nats.NewMsg(entrySubject(r.cfg.Durable, strconv.FormatUint(e.streamSeq, 10)))
	m.Header.Set(hdrDurable, r.cfg.Durable)
	m.Header.Set(hdrStream, e.stream)
	m.Header.Set(hdrSubject, e.subject)
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(e.streamSeq, 10))
	m.Header.Set(hdrError, headerText(e.err, maxErrorLen))
	m.Header.Set(hdrAttempts, strconv.Itoa(e.attempts))
	m.Header.Set(hdrTime, e.at.UTC().Format(time.RFC3339Nano))
	_, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectStream(r.cfg.DeadLetter))
	return err
}

func parseEntry(m *jetstream.RawStreamMsg) entry {
	h := m.Header
	e := entry{
		durable: h.Get(hdrDurable),
		stream:  h.Get(hdrStream),
		subject: h.Get(hdrSubject),
		err:     h.Get(hdrError),
	}
	e.streamSeq, _ = strconv.ParseUint(h.Get(hdrStreamSeq), 10, 64)
	e.attempts, _ = strconv.Atoi(h.Get(hdrAttempts))
	e.at, _ = time.Parse(time.RFC3339Nano, h.Get(hdrTime))
	return e
}

// headerText makes s fit a header value: one line, valid UTF-8, at most n bytes.
func headerText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func termReason(err string) string { return "dead-lettered: " + headerText(err, 200) }

// withDefaultTimeout gives ctx a deadline when the caller set none.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// DeadLetters lists the dead letters of one durable, oldest first. A missing
// dead-letter stream means there are none. Without a deadline on ctx the
// listing gets 30 seconds.
func DeadLetters(ctx context.Context, js jetstream.JetStream, deadLetterStream, durable string) ([]DeadLetter, error) {
	if err := checkToken("durable", durable); err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consume: dead letters of %s: %w", durable, err)
	}
	// Dead letters are few (each is an incident), so walking them with
	// "next message on these subjects" gets is simpler than a consumer and
	// leaves nothing behind on the server.
	filter := entrySubject(durable, "*")
	var out []DeadLetter
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("consume: dead letters of %s: %w", durable, err)
		}
		e := parseEntry(m)
		out = append(out, DeadLetter{
			Seq:       m.Sequence,
			Durable:   durable,
			Stream:    e.stream,
			StreamSeq: e.streamSeq,
			Subject:   e.subject,
			Error:     e.err,
			Attempts:  e.attempts,
			At:        e.at,
		})
		seq = m.Sequence + 1
	}
}

// Redrive asks the running consumer durable to handle the original message of
// dead letter seq (DeadLetter.Seq) again. The request is stored, so a durable
// that is not running handles it when it next runs. On success the dead
// letter is deleted; on failure it is replaced with the new error.
//
// Redrive returns an error wrapping ErrNotFound if deadLetterStream has no
// dead letter seq for durable (it was re-driven already, or replaced by a
// newer one for the same message). Without a deadline on ctx it gets 10
// seconds.
func Redrive(ctx context.Context, js jetstream.JetStream, deadLetterStream, durable string, seq uint64) error {
	if err := checkToken("durable", durable); err != nil {
		return err
	}
	ctx, cancel := withDefaultTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("consume: redrive %s dead letter %d: %w", durable, seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("consume: redrive %s dead letter %d: %w", durable, seq, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("consume: redrive %s dead letter %d: %w", durable, seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("consume: redrive %s dead letter %d: %w", durable, seq, err)
	}
	streamSeq, ok := parseSeqSubject(m.Subject, entrySubject(durable, ""))
	if !ok {
		return fmt.Errorf("consume: redrive %s dead letter %d (%s): %w", durable, seq, m.Subject, ErrNotFound)
	}
	req := nats.NewMsg(redriveSubject(durable, strconv.FormatUint(streamSeq, 10)))
	req.Header.Set(hdrStreamSeq, strconv.FormatUint(streamSeq, 10))
	if _, err := js.PublishMsg(ctx, req, jetstream.WithExpectStream(deadLetterStream)); err != nil {
		return fmt.Errorf("consume: redrive %s dead letter %d: %w", durable, seq, err)
	}
	return nil
}
