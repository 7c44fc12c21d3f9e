package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leadflow/leadflow/pkg/eventstore"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
)

// floorIntake is the floor of a capture: a gRPC service whose CaptureLead
// does nothing but one JetStream append (as many bytes as a LeadCaptured
// event, with the event store's type and id headers, to a new lead-shaped
// subject in a stream like the event stream, expecting it empty; a stream
// of its own, so no consumer sees it). Intake does the same call plus its
// rules, identity, key and encryption, so CaptureLead / this is what
// Leadflow adds over the transport and the store.
type floorIntake struct {
	intakev1.UnimplementedIntakeServiceServer
	js   jetstream.JetStream
	data []byte // a LeadCaptured's size
}

func (f *floorIntake) CaptureLead(ctx context.Context, _ *intakev1.CaptureLeadRequest) (*intakev1.CaptureLeadResponse, error) {
	id := uuid.NewString()
	m := nats.NewMsg("floor." + strconv.Itoa(eventstore.Partition(id)) + "." + id)
	m.Data = f.data
	m.Header.Set(eventstore.HeaderType, "LeadCaptured")
	m.Header.Set(eventstore.HeaderEventID, uuid.NewString())
	ack, err := f.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		return nil, err
	}
	return &intakev1.CaptureLeadResponse{LeadId: id, Version: ack.Sequence}, nil
}

// measureCaptureFloor serves floorIntake in this process and calls it the
// way measureIntake calls intake, at each concurrency; it stores size
// bytes a call.
func measureCaptureFloor(ctx context.Context, natsURL string, d time.Duration, size int) (map[int]result, error) {
	nc, js, err := eventstore.Dial(natsURL, "bench-capture-floor")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CAPTUREFLOOR", Subjects: []string{"floor.>"},
		Storage: jetstream.FileStorage, DenyDelete: true, AllowDirect: true})
	if err != nil {
		return nil, fmt.Errorf("capture floor stream: %w", err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), st.CachedInfo().Config.Name) }()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	intakev1.RegisterIntakeServiceServer(srv, &floorIntake{js: js, data: make([]byte, size)})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	clients := make([]intakev1.IntakeServiceClient, 4)
	for i := range clients {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		clients[i] = intakev1.NewIntakeServiceClient(conn)
	}
	for range 200 {
		if _, err := clients[0].CaptureLead(ctx, captureReq("floor-warm")); err != nil {
			return nil, fmt.Errorf("capture floor: %w", err)
		}
	}
	var rr atomic.Int64
	out := map[int]result{}
	for _, c := range concurrencies {
		out[c] = timed(d, c, func() error {
			_, err := clients[rr.Add(1)%int64(len(clients))].CaptureLead(ctx, captureReq("floor"))
			return err
		})
	}
	return out, nil
}
