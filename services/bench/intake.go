package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// buildService builds services/<name> into dir and returns the binary.
func buildService(dir, name string) (string, error) {
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, "./services/"+name)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return bin, nil
}

// freePort is a TCP port nothing listens on at the moment.
func freePort() (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port, nil
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
	// knownCapture and knownBulk: captures at 16 clients, and an import,
	// of people captured before (each a LeadResubmitted on its lead).
	knownCapture result
	knownBulk    result
}

// knownRows bounds the re-import of known rows.
const knownRows = 20_000

var seq atomic.Int64

func captureReq(prefix string) *intakev1.CaptureLeadRequest {
	return captureReqN(prefix, seq.Add(1))
}

// captureReqN is the n-th person of a prefix: the same n, the same person.
func captureReqN(prefix string, n int64) *intakev1.CaptureLeadRequest {
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
	health := make([]healthpb.HealthClient, len(conns))
	for i, conn := range conns {
		health[i] = healthpb.NewHealthClient(conn)
	}
	for _, c := range concurrencies {
		f.grpcFloor[c] = timed(d/2, c, func() error {
			_, err := health[rr.Add(1)%int64(len(health))].Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
	}
	var first, last int64 // the people captured at 16 clients
	for _, c := range concurrencies {
		if c == 16 {
			first = seq.Load() + 1
		}
		f.capture[c] = timed(d, c, func() error {
			_, err := clients[rr.Add(1)%int64(len(clients))].CaptureLead(ctx, captureReq("c"))
			return err
		})
		if c == 16 {
			last = seq.Load()
		}
	}
	// The same people again: every capture finds its lead.
	var next atomic.Int64
	f.knownCapture = timed(d, 16, func() error {
		n := first + (next.Add(1)-1)%(last-first+1)
		r, err := clients[rr.Add(1)%int64(len(clients))].CaptureLead(ctx, captureReqN("c", n))
		if err == nil && r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
			return fmt.Errorf("known person %d: %v", n, r.GetOutcome())
		}
		return err
	})
	before, err := storedMessages(ctx, addr)
	if err != nil {
		return f, err
	}
	bulkFirst := seq.Add(int64(bulkRows)) - int64(bulkRows) + 1
	person := func(want intakev1.CaptureOutcome) func(i int) (int64, intakev1.CaptureOutcome) {
		return func(i int) (int64, intakev1.CaptureOutcome) { return bulkFirst + int64(i), want }
	}
	if f.bulk, err = importRows(ctx, clients[0], bulkRows, person(intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED)); err != nil {
		return f, err
	}
	after, err := storedMessages(ctx, addr)
	if err != nil {
		return f, err
	}
	f.msgsPerRow = float64(after-before) / float64(f.bulk.ops)
	f.knownBulk, err = importRows(ctx, clients[0], min(bulkRows, knownRows), person(intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED))
	return f, err
}

// importRows streams rows through ImportLeads, row i being the person
// person(i) names, and checks each answer's outcome against it.
func importRows(ctx context.Context, client intakev1.IntakeServiceClient, rows int, person func(i int) (int64, intakev1.CaptureOutcome)) (result, error) {
	stream, err := client.ImportLeads(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	sendErr := make(chan error, 1)
	go func() {
		for i := range rows {
			n, _ := person(i)
			if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i), Lead: captureReqN("bulk", n)}); err != nil {
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
			return result{}, err
		}
		if _, want := person(int(r.GetRow())); len(r.GetErrors()) > 0 || r.GetOutcome() != want {
			return result{}, fmt.Errorf("bulk row %d: %v, want %v", r.GetRow(), r, want)
		}
		got++
	}
	if err := <-sendErr; err != nil {
		return result{}, err
	}
	return result{ops: got, elapsed: time.Since(start)}, nil
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
