package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
)

// proc is a service process the bench started.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// startService runs a service binary on a free port against the bench's
// server, with fresh vault keys, and waits until its gRPC health check
// says SERVING.
func startService(ctx context.Context, bin, natsURL string) (*proc, error) {
	return startServiceEnv(ctx, bin, natsURL, "LEADFLOW_MASTER_KEY="+hexKey(), "LEADFLOW_BLIND_KEY="+hexKey())
}

func hexKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type intakeFigures struct {
	grpcFloor map[int]result // an empty unary call (health check) to the same process
	capture   map[int]result
	// captureFloor is a gRPC service doing one append per call.
	captureFloor map[int]result
	bulk         result
	msgsPerRow   float64
}

var seq atomic.Int64

func captureReq(prefix string) *intakev1.CaptureLeadRequest {
	n := seq.Add(1)
	return &intakev1.CaptureLeadRequest{
		Contact:     &eventv1.Contact{Email: prefix + strconv.FormatInt(n, 10) + "@bench.example", FirstName: "Bench", LastName: "Mark"},
		Profile:     &eventv1.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 250, Country: "GB"},
		Attribution: &eventv1.Attribution{Source: "web-form"},
	}
}

func measureIntake(ctx context.Context, addr string, d time.Duration, bulkRows int) (intakeFigures, error) {
	f := intakeFigures{capture: map[int]result{}, grpcFloor: map[int]result{}}
	// Enough connections that one HTTP/2 connection is not the bottleneck.
	clients := make([]intakev1.IntakeServiceClient, 4)
	conns := make([]*grpc.ClientConn, len(clients))
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return f, err
		}
		defer conn.Close()
		conns[i], clients[i] = conn, intakev1.NewIntakeServiceClient(conn)
	}
	// Warm up: connections, caches, the JIT-free but page-cold server.
	for range 200 {
		if _, err := clients[0].CaptureLead(ctx, captureReq("warm")); err != nil {
			return f, err
		}
	}
	var rr atomic.Int64
	health := healthpb.NewHealthClient(conns[0])
	for _, c := range concurrencies {
		f.grpcFloor[c] = timed(d/2, c, func() error {
			_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
	}
	for _, c := range concurrencies {
		f.capture[c] = timed(d, c, func() error {
			_, err := clients[rr.Add(1)%int64(len(clients))].CaptureLead(ctx, captureReq("c"))
			return err
		})
	}

	before, err := storedMessages(ctx, addr)
	if err != nil {
		return f, err
	}
	stream, err := clients[0].ImportLeads(ctx)
	if err != nil {
		return f, err
	}
	start := time.Now()
	sendErr := make(chan error, 1)
	go func() {
		for i := range bulkRows {
			if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i), Lead: captureReq("bulk")}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	got := 0
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return f, err
		}
		if len(r.GetErrors()) > 0 || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			return f, fmt.Errorf("bulk row %d: %v", r.GetRow(), r)
		}
		got++
	}
	if err := <-sendErr; err != nil {
		return f, err
	}
	f.bulk = result{ops: got, elapsed: time.Since(start)}
	after, err := storedMessages(ctx, addr)
	if err != nil {
		return f, err
	}
	f.msgsPerRow = float64(after-before) / float64(got)
	return f, nil
}

// storedMessages counts messages in the event stream and the key bucket.
func storedMessages(ctx context.Context, _ string) (uint64, error) {
	nc, js, err := eventstore.Dial(natsURLForCount, "bench-count")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var total uint64
	for _, name := range []string{"LEADFLOW", "KV_LEADFLOW_KEYS"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		total += info.State.Msgs
	}
	return total, nil
}

var natsURLForCount string
