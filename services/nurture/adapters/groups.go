package adapters

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/services/nurture/app"
)

var _ app.Groups = (*Groups)(nil)

// Groups reads consumer groups' progress on the lead stream and the dead
// letters of every group.
type Groups struct {
	js         jetstream.JetStream
	stream     string
	deadLetter string
}

// NewGroups returns the groups of stream, with dead letters in deadLetter
// (default consume.DefaultDeadLetterStream).
func NewGroups(js jetstream.JetStream, stream, deadLetter string) *Groups {
	if deadLetter == "" {
		deadLetter = consume.DefaultDeadLetterStream
	}
	return &Groups{js: js, stream: stream, deadLetter: deadLetter}
}

// AckFloors returns each lead partition's ack floor (a stream sequence)
// of group; 0 for a partition whose durable does not exist yet.
func (g *Groups) AckFloors(ctx context.Context, group string) ([]uint64, error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	floors := make([]uint64, eventstore.Partitions)
	errs := make([]error, eventstore.Partitions)
	var wg sync.WaitGroup
	for p := range eventstore.Partitions {
		wg.Go(func() {
			c, err := g.js.Consumer(ctx, g.stream, consume.Durable(group, p, eventstore.Partitions))
			switch {
			case errors.Is(err, jetstream.ErrConsumerNotFound):
			case err != nil:
				errs[p] = fmt.Errorf("ack floor of %s partition %d: %w", group, p, err)
			default:
				floors[p] = c.CachedInfo().AckFloor.Stream
			}
		})
	}
	wg.Wait()
	return floors, errors.Join(errs...)
}

// Stopped reports whether group has a durable on the stream and no key in
// the members bucket: members renew their key every second and it expires
// after 3, so a killed group is seen stopped within seconds.
func (g *Groups) Stopped(ctx context.Context, group string) (bool, error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	_, err := g.js.Consumer(ctx, g.stream, consume.Durable(group, 0, eventstore.Partitions))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // never ran here: a lead waiting for it is not judged by this
	}
	if err != nil {
		return false, fmt.Errorf("durable of %s: %w", group, err)
	}
	n, err := consume.Members(ctx, g.js, consume.DefaultMembersBucket, group)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

// DeadLetters lists every dead letter and parked lead of every group.
func (g *Groups) DeadLetters(ctx context.Context) ([]consume.DeadLetter, error) {
	return consume.DeadLetters(ctx, g.js, g.deadLetter)
}

// Redrive asks group to handle lead's dead letter again: the message at
// seq, as DeadLetters listed it (0 for whichever it is then).
func (g *Groups) Redrive(ctx context.Context, group, leadID string, seq uint64) error {
	return consume.Redrive(ctx, g.js, g.deadLetter, group, leadID, seq)
}
