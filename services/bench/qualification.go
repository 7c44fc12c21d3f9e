package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

type qualification struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	conn   *grpc.ClientConn
	client qualificationv1.QualificationServiceClient
}

func newQualification(ctx context.Context, natsURL, addr string, opts ...nats.Option) (*qualification, error) {
	nc, js, err := eventstore.Dial(natsURL, "bench-qualification", opts...)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, serviceCreds)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &qualification{nc: nc, js: js, conn: conn, client: qualificationv1.NewQualificationServiceClient(conn)}, nil
}

func (q *qualification) close() { q.conn.Close(); q.nc.Close() }

// activate proposes the default model with a threshold and signs it off,
// then waits for its re-score to finish; it returns how long that took.
func (q *qualification) activate(ctx context.Context, threshold int) error {
	_, err := q.activateTimed(ctx, threshold)
	return err
}

func (q *qualification) activateTimed(ctx context.Context, threshold int) (time.Duration, error) {
	m := scoring.Default()
	m.Threshold = threshold
	prop, err := q.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(m),
		ProposedBy: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "bench", Team: eventv1.Team_TEAM_MARKETING}})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, team := range []eventv1.Team{eventv1.Team_TEAM_MARKETING, eventv1.Team_TEAM_SALES} {
		if _, err := q.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: prop.GetVersion(),
			Approver: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "bench-" + team.String(), Team: team}}); err != nil {
			return 0, err
		}
	}
	for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		p, err := q.client.GetRescoreProgress(ctx, &qualificationv1.GetRescoreProgressRequest{Version: prop.GetVersion()})
		if err != nil {
			return 0, err
		}
		if p.GetState() == qualificationv1.RescoreState_RESCORE_STATE_COMPLETED {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("re-score of v%d did not complete", prop.GetVersion())
}

// durables are the qualification service's live consumers: its group has
// one pinned durable per lead partition (pkg/consume), shared by every
// replica.
func durables() []string {
	names := make([]string, eventstore.Partitions)
	for p := range names {
		names[p] = consume.Durable(ports.Group, p, eventstore.Partitions)
	}
	return names
}

// pause stops the deliveries of every live durable (JetStream consumer
// pause) until resume; the process keeps running and keeps its pulls open.
// The service may report SERVING before its consumer group has created
// the durables, so a missing one is waited for.
func (q *qualification) pause(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range durables() {
		for {
			_, err := q.js.PauseConsumer(ctx, eventstore.DefaultStream, name, time.Now().Add(24*time.Hour))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pause %s: %w", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return q.idle(ctx, time.Minute)
}

// resume lets every live durable deliver again.
func (q *qualification) resume(ctx context.Context) error {
	for _, name := range durables() {
		if _, err := q.js.ResumeConsumer(ctx, eventstore.DefaultStream, name); err != nil {
			return fmt.Errorf("resume %s: %w", name, err)
		}
	}
	return nil
}

// pending sums what the live durables have not delivered yet and what
// they delivered and wait an ack for.
func (q *qualification) pending(ctx context.Context) (pending, unacked uint64, err error) {
	for _, name := range durables() {
		c, err := q.js.Consumer(ctx, eventstore.DefaultStream, name)
		if err != nil {
			return 0, 0, fmt.Errorf("consumer %s: %w", name, err)
		}
		info := c.CachedInfo() // just fetched by Consumer
		pending += info.NumPending
		unacked += uint64(info.NumAckPending)
	}
	return pending, unacked, nil
}

// idle waits until no live durable has anything pending or unacked.
// A consumer that does not answer is asked again until max: after a
// cluster node was killed, its consumers have no leader for a moment.
func (q *qualification) idle(ctx context.Context, max time.Duration) error {
	for deadline := time.Now().Add(max); ; time.Sleep(100 * time.Millisecond) {
		pending, unacked, err := q.pending(ctx)
		if err == nil && pending == 0 && unacked == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return err
			}
			return fmt.Errorf("%d consumers still busy: %d pending, %d unacked", eventstore.Partitions, pending, unacked)
		}
	}
}

type qualificationFigures struct {
	backlog  result // lead events through the live consumer
	rescore  time.Duration
	leads    uint64
	sizeNote string
}

// measure resumes the live consumer on the backlog intake left (every
// capture is a scoring trigger), times the drain, then activates a new
// model version and times the re-score of every lead.
func (q *qualification) measure(ctx context.Context) (qualificationFigures, error) {
	var f qualificationFigures
	backlog, _, err := q.pending(ctx)
	if err != nil {
		return f, err
	}
	start := time.Now()
	if err := q.resume(ctx); err != nil {
		return f, err
	}
	if err := q.idle(ctx, 30*time.Minute); err != nil {
		return f, err
	}
	f.backlog = result{ops: int(backlog), elapsed: time.Since(start)}
	st, err := q.js.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		return f, err
	}
	si, err := st.Info(ctx, jetstream.WithSubjectFilter(eventstore.LeadSubjects))
	if err != nil {
		return f, err
	}
	f.leads = uint64(len(si.State.Subjects))
	if f.rescore, err = q.activateTimed(ctx, 60); err != nil {
		return f, err
	}
	return f, nil
}

func reportQualification(w io.Writer, raw rawFigures, floor *floorFigures, f qualificationFigures) {
	fmt.Fprintf(w, "Leadflow qualification (separate process, same server):\n")
	fmt.Fprintf(w, "  scoring backlog       %8.0f events/s  (%d lead events through the group's %d partition durables: load, score, append LeadScored/LeadQualified)\n",
		f.backlog.rate(), f.backlog.ops, eventstore.Partitions)
	fmt.Fprintf(w, "                                        %s of raw fetch+ack; %s of raw appends with expected sequence (c=16)\n",
		ratio(f.backlog.rate(), raw.fetchAck.rate()), ratio(f.backlog.rate(), raw.occ.rate()))
	if floor != nil {
		floor.print(w, f.backlog.rate())
	}
	fmt.Fprintf(w, "  re-score on activation  %s for %d leads (%.0f leads/s)\n\n", f.rescore.Round(time.Millisecond), f.leads, float64(f.leads)/f.rescore.Seconds())
}
