package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// The projector's data set: campaigns with costs, and leads that go down
// a funnel, each lead as far as its depth (a fixed hash of its index):
//
//	capture 100%, activity 60%, MQL 40%, assigned 25%, accepted 15%,
//	opportunity 8%, won 3%: about 2.5 events a lead.
//
// Leads are written in waves of genWave, round by round within a wave,
// so one lead's events lie a few thousand messages apart, as in a stream
// where leads move on while others arrive.

const (
	genCampaigns = 20
	genWave      = 2000 // below the client's limit of unacknowledged async publishes
)

// genDepth is how many events lead i has (1 to 7).
func genDepth(i int) int {
	h := fnv.New32a()
	h.Write([]byte(strconv.Itoa(i)))
	switch p := h.Sum32() % 100; {
	case p < 3:
		return 7
	case p < 8:
		return 6
	case p < 15:
		return 5
	case p < 25:
		return 4
	case p < 40:
		return 3
	case p < 60:
		return 2
	}
	return 1
}

func genCampaign(i int) string { return fmt.Sprintf("c%02d", i%genCampaigns) }

// genRound is round r of lead i: the command and its payload.
func genRound(i, r int) (lifecycle.Command, proto.Message) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	rep := fmt.Sprintf("rep%d", i%50)
	switch r {
	case 0:
		return c(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: make([]byte, 89),
			Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: genCampaign(i)},
			Profile:     &eventv1.Profile{EmailDomain: fmt.Sprintf("d%d.example", i%5000), Country: "DE", Employees: int32(10 + i%900)}}
	case 1:
		return c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: "a", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT,
			CampaignId: genCampaign(i / 7)}
	case 2:
		return c(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70}
	case 3:
		return lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: rep}},
			&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: rep}, Segment: "mid"}
	case 4:
		return c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: rep, Segment: "mid"}
	case 5:
		return c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o1", RepId: rep, Segment: "mid",
			Amount: &eventv1.Money{Currency: "EUR", MinorUnits: int64(100_000 + 1000*(i%500))}}
	}
	return c(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o1", Segment: "mid"}
}

// generated is what generateLeads wrote.
type generated struct {
	ids    []string
	events int // every message stored, campaigns included
}

// generateLeads writes n leads and the campaigns to the stream, with
// asynchronous publishes that carry the expected last subject sequence
// and the headers the event store sets.
func generateLeads(ctx context.Context, js jetstream.JetStream, n int, progress func(done int)) (generated, error) {
	g := generated{ids: make([]string, n)}
	store := eventstore.New(js, eventstore.DefaultStream)
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for c := range genCampaigns {
		id := genCampaign(c)
		for _, p := range []proto.Message{
			&eventv1.CampaignRegistered{CampaignId: id, Name: "Campaign " + id, Channel: eventv1.Channel(1 + c%5)},
			&eventv1.CampaignCostRecorded{CampaignId: id, CostId: "k1", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: int64(1_000_000 * (1 + c%4))}},
		} {
			ev, err := envelope.NewEvent("", p, envelope.Meta{OccurredAt: t0}, t0)
			if err != nil {
				return g, err
			}
			subj := eventstore.CampaignSubject(id)
			v, err := store.Version(ctx, subj)
			if err != nil {
				return g, err
			}
			if _, err := store.Append(ctx, subj, v, ev); err != nil {
				return g, err
			}
			g.events++
		}
	}
	// Captures spread over 90 days; each later event a few hours after the
	// one before.
	span := 90 * 24 * time.Hour
	states := make([]lifecycle.State, genWave)
	versions := make([]uint64, genWave)
	futures := make([]jetstream.PubAckFuture, genWave)
	idx := make([]int, 0, genWave)
	for lo := 0; lo < n; lo += genWave {
		hi := min(lo+genWave, n)
		for i := lo; i < hi; i++ {
			g.ids[i] = uuid.NewString()
			states[i-lo], versions[i-lo] = lifecycle.State{}, 0
		}
		for r := range 7 {
			idx = idx[:0]
			for i := lo; i < hi; i++ {
				if genDepth(i) <= r {
					continue
				}
				at := t0.Add(time.Duration(int64(span) * int64(i) / int64(n))).Add(time.Duration(r*5) * time.Hour)
				cmd, payload := genRound(i, r)
				ev, after, err := lifecycle.NewEvent(g.ids[i], states[i-lo], cmd, lifecycle.DefaultPolicy(), payload,
					envelope.Meta{CorrelationID: g.ids[i], OccurredAt: at}, at)
				if err != nil {
					return g, fmt.Errorf("lead %d round %d: %w", i, r, err)
				}
				states[i-lo] = after
				ev.VersionBefore = versions[i-lo] // as Store.Append stamps it
				data, err := proto.Marshal(ev)
				if err != nil {
					return g, err
				}
				m := nats.NewMsg(eventstore.LeadSubject(g.ids[i]))
				m.Header.Set(eventstore.HeaderType, ev.GetEventType())
				m.Header.Set(eventstore.HeaderEventID, ev.GetEventId())
				m.Data = data
				if futures[len(idx)], err = js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(versions[i-lo])); err != nil {
					return g, err
				}
				idx = append(idx, i)
			}
			for k, i := range idx {
				select {
				case ack := <-futures[k].Ok():
					versions[i-lo] = ack.Sequence
				case err := <-futures[k].Err():
					return g, fmt.Errorf("publish lead %d: %w", i, err)
				case <-time.After(30 * time.Second):
					return g, fmt.Errorf("publish lead %d: no ack", i)
				}
			}
			g.events += len(idx)
		}
		if progress != nil {
			progress(hi)
		}
	}
	return g, nil
}
