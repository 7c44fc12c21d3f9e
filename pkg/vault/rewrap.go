package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Rewrap stores again, wrapped with the master key, every stored key and
// key block that a read master key wrapped, and erases the version before
// on disk, so that the read master keys can then be dropped. It returns
// how many it stored again. Safe beside Take, Save, Open and Shred, in
// any number of processes: every rewrite is conditional on the version it
// read. After an error, call it again.
func (v *Vault) Rewrap(ctx context.Context) (int, error) {
	if len(v.readOnly) == 0 {
		return 0, nil
	}
	info, err := v.stream.Info(ctx, jetstream.WithSubjectFilter(v.prefix+">"))
	if err != nil {
		return 0, fmt.Errorf("vault: rewrap: list keys: %w", err)
	}
	n := 0
	for subject := range info.State.Subjects {
		name := strings.TrimPrefix(subject, v.prefix)
		var done bool
		if blockHex, ok := strings.CutPrefix(name, blockToken+"."); ok {
			done, err = v.rewriteBlock(ctx, blockHex, func(_ []byte, current bool) (bool, error) { return !current, nil })
		} else {
			done, err = v.rewrapKey(ctx, name)
		}
		if err != nil {
			return n, fmt.Errorf("vault: rewrap %s: %w", name, err)
		}
		if done {
			n++
		}
	}
	return n, nil
}

// rewrapKey is Rewrap for one of a lead's own keys: "<lead id>.<key id>",
// or a first-format "<lead id>".
func (v *Vault) rewrapKey(ctx context.Context, name string) (bool, error) {
	subject := v.prefix + name
	for {
		m, err := v.stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && isMarker(m.Header) {
			return false, nil // shredded: nothing to keep
		}
		if err != nil {
			return false, fmt.Errorf("read key: %w", err)
		}
		plain, current, err := v.unwrapAny(name, m.Data)
		if err != nil {
			return false, err
		}
		if current {
			clear(plain)
			return false, v.eraseBefore(ctx, subject, m.Sequence)
		}
		msg := &nats.Msg{Subject: subject, Data: seal(v.master, name, plain)}
		clear(plain)
		_, err = v.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(m.Sequence))
		if eventstore.IsWrongLastSequence(err) {
			continue // shredded or rewrapped meanwhile: look again
		}
		if err != nil {
			return false, fmt.Errorf("rewrite key: %w", err)
		}
		if err := v.eraseBefore(ctx, subject, m.Sequence+1); err != nil {
			return false, err
		}
		// A Shred of the lead lists its keys after writing its marker; if
		// it listed them before this write, the marker is there now and
		// the lead's keys are erased again, this one included.
		if lead, _, ok := strings.Cut(name, "."); ok {
			marker, err := v.stream.GetLastMsgForSubject(ctx, v.prefix+lead)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return false, fmt.Errorf("read key: %w", err)
			case isMarker(marker.Header):
				return false, v.shred(ctx, lead)
			}
		}
		return true, nil
	}
}

// eraseBefore erases the subject's messages before sequence end: the
// versions a rewrap cut short left.
func (v *Vault) eraseBefore(ctx context.Context, subject string, end uint64) error {
	seqs, err := v.keySeqs(ctx, subject)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if seq < end {
			if err := v.erase(ctx, seq); err != nil {
				return err
			}
		}
	}
	return nil
}
