package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// scriptedProjector answers StartRebuild with AlreadyExists and each
// status call with the next of statuses (the last one for good); a nil
// status is a projector not there (Unavailable).
type scriptedProjector struct {
	projectorv1.ProjectorServiceClient
	mu       sync.Mutex
	statuses []*projectorv1.GetProjectionStatusResponse
	// slowStart: the first StartRebuild outlasts the caller's timeout.
	slowStart bool
}

func (s *scriptedProjector) StartRebuild(context.Context, *projectorv1.StartRebuildRequest, ...grpc.CallOption) (*projectorv1.StartRebuildResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slowStart {
		s.slowStart = false
		return nil, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	}
	return nil, status.Error(codes.AlreadyExists, "a rebuild is running")
}

func (s *scriptedProjector) GetProjectionStatus(context.Context, *projectorv1.GetProjectionStatusRequest, ...grpc.CallOption) (*projectorv1.GetProjectionStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statuses[0]
	if len(s.statuses) > 1 {
		s.statuses = s.statuses[1:]
	}
	if st == nil {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	if st.GetActiveSchema() == "failing" {
		return nil, status.Error(codes.Internal, "internal error")
	}
	if st.GetActiveSchema() == "refused" {
		return nil, status.Error(codes.Unauthenticated, "the token expired")
	}
	return st, nil
}

// A followed rebuild that resumes one which failed shows that run's
// error until it gets past it: leadctl follows it to its swap instead of
// reporting the old failure as this run's. Stopped with an error, it
// failed.
func TestAFollowedRebuildIsNotFailedByTheLastRunsError(t *testing.T) {
	old := &projectorv1.RebuildProgress{Schema: "leads_4", Running: true, Error: "boom", Position: 500}
	p := &scriptedProjector{statuses: []*projectorv1.GetProjectionStatusResponse{
		{ActiveSchema: "leads_3"}, // before
		{ActiveSchema: "leads_3", Rebuild: old},
		{ActiveSchema: "leads_3", Rebuild: &projectorv1.RebuildProgress{Schema: "leads_4", Running: true, Position: 600}},
		{ActiveSchema: "leads_4", Rebuild: &projectorv1.RebuildProgress{Schema: "leads_4", Done: true, Position: 700}},
	}}
	cmd := &cobra.Command{}
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetContext(context.Background())
	o := &options{timeout: time.Second}
	res, err := rebuild(cmd, o, p, time.Millisecond)
	if err != nil || res.Schema != "leads_4" || !res.Followed {
		t.Fatalf("followed rebuild: %+v, %v; want it followed to its swap", res, err)
	}
	stopped := &projectorv1.RebuildProgress{Schema: "leads_4", Error: "boom", Position: 500}
	p.statuses = []*projectorv1.GetProjectionStatusResponse{{ActiveSchema: "leads_3"}, {ActiveSchema: "leads_3", Rebuild: stopped}}
	if _, err := rebuild(cmd, o, p, time.Millisecond); err == nil {
		t.Fatal("a followed rebuild that stopped with an error: no error")
	}
}

// A start the projector does not answer within --timeout (it drops the
// schema before and migrates the new one first) may run all the same:
// leadctl follows the rebuild to its swap instead of failing.
func TestARebuildWhoseStartOutlastsTheTimeoutIsFollowed(t *testing.T) {
	p := &scriptedProjector{slowStart: true, statuses: []*projectorv1.GetProjectionStatusResponse{
		{ActiveSchema: "leads_3"}, // before
		{ActiveSchema: "leads_3", Rebuild: &projectorv1.RebuildProgress{Schema: "leads_4", Running: true, Position: 600}},
		{ActiveSchema: "leads_4", Rebuild: &projectorv1.RebuildProgress{Schema: "leads_4", Done: true, Position: 700}},
	}}
	cmd := &cobra.Command{}
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetContext(context.Background())
	res, err := rebuild(cmd, &options{timeout: time.Second}, p, time.Millisecond)
	if err != nil || res.Schema != "leads_4" || !res.Followed {
		t.Fatalf("a rebuild whose start timed out: %+v, %v; want it followed to its swap", res, err)
	}
}

// A projector killed mid-rebuild is asked again until it is back (a
// supervisor restarts it), which then says the rebuild stopped; one that
// stays away is reported so, not as a wrong address. Either way leadctl
// says a new rebuild resumes it.
func TestARebuildWhoseProjectorDiesSaysSo(t *testing.T) {
	defer func(d time.Duration) { silentFor = d }(silentFor)
	silentFor = 200 * time.Millisecond
	running := &projectorv1.RebuildProgress{Schema: "leads_4", Running: true, Position: 600}
	cmd := &cobra.Command{}
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetContext(context.Background())
	o := &options{timeout: time.Second, projector: "127.0.0.1:7425"}

	back := &scriptedProjector{statuses: []*projectorv1.GetProjectionStatusResponse{
		{ActiveSchema: "leads_3"}, {ActiveSchema: "leads_3", Rebuild: running}, nil, {ActiveSchema: "failing"}, nil,
		{ActiveSchema: "leads_3", Rebuild: &projectorv1.RebuildProgress{Schema: "leads_4", Position: 650}},
	}}
	_, err := rebuild(cmd, o, back, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "stopped at stream seq 650") || !strings.Contains(err.Error(), "leadctl rebuild resumes it") {
		t.Fatalf("restarted projector: %v, want the rebuild stopped at 650 and how to resume it", err)
	}

	gone := &scriptedProjector{statuses: []*projectorv1.GetProjectionStatusResponse{
		{ActiveSchema: "leads_3"}, {ActiveSchema: "leads_3", Rebuild: running}, nil,
	}}
	_, err = rebuild(cmd, o, gone, 10*time.Millisecond)
	if err == nil || strings.Contains(err.Error(), "set --projector") || !strings.Contains(err.Error(), "stopped answering") ||
		!strings.Contains(err.Error(), "after stream seq 600") || !strings.Contains(err.Error(), "leadctl rebuild resumes it") {
		t.Fatalf("projector gone: %v, want it said to have stopped answering after 600, and how to resume", err)
	}

	// A projector that answers, refusing: said at once, as it is.
	refused := &scriptedProjector{statuses: []*projectorv1.GetProjectionStatusResponse{
		{ActiveSchema: "leads_3"}, {ActiveSchema: "leads_3", Rebuild: running}, {ActiveSchema: "refused"},
	}}
	start := time.Now()
	_, err = rebuild(cmd, o, refused, 10*time.Millisecond)
	if status.Code(err) != codes.Unauthenticated || strings.Contains(err.Error(), "stopped answering") || time.Since(start) >= silentFor ||
		!strings.Contains(err.Error(), "leadctl rebuild follows it again") {
		t.Fatalf("a refused status: %v after %v, want the refusal at once", err, time.Since(start))
	}
}
