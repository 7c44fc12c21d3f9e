package main

import (
	"bytes"
	"context"
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
// status call with the next of statuses (the last one for good).
type scriptedProjector struct {
	projectorv1.ProjectorServiceClient
	mu       sync.Mutex
	statuses []*projectorv1.GetProjectionStatusResponse
}

func (s *scriptedProjector) StartRebuild(context.Context, *projectorv1.StartRebuildRequest, ...grpc.CallOption) (*projectorv1.StartRebuildResponse, error) {
	return nil, status.Error(codes.AlreadyExists, "a rebuild is running")
}

func (s *scriptedProjector) GetProjectionStatus(context.Context, *projectorv1.GetProjectionStatusRequest, ...grpc.CallOption) (*projectorv1.GetProjectionStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statuses[0]
	if len(s.statuses) > 1 {
		s.statuses = s.statuses[1:]
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
