package grpcserver

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

func entry(summary string) []byte {
	b := protowire.AppendTag(nil, 3, protowire.BytesType) // TimelineEntry.summary
	return protowire.AppendBytes(b, []byte(summary))
}

// The field path of invalid UTF-8 names list elements by index and
// nested messages by their field names.
func TestInvalidUTF8NamesTheField(t *testing.T) {
	var wire []byte
	wire = protowire.AppendTag(wire, 1, protowire.BytesType) // lead_id
	wire = protowire.AppendBytes(wire, []byte("lead-1"))
	for _, s := range []string{"fine", "also fine", "bad \xff here"} {
		wire = protowire.AppendTag(wire, 2, protowire.BytesType) // entries
		wire = protowire.AppendBytes(wire, entry(s))
	}
	desc := (&intakev1.GetLeadTimelineResponse{}).ProtoReflect().Descriptor()
	if got := invalidUTF8(desc, wire, ""); got != "entries[2].summary" {
		t.Fatalf("path %q, want entries[2].summary", got)
	}
	valid := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("lead-1"))
	if got := invalidUTF8(desc, valid, ""); got != "" {
		t.Fatalf("valid data reported at %q", got)
	}
}

func TestInvalidArgumentCarriesViolations(t *testing.T) {
	err := InvalidArgument("bad", FieldViolation{"contact.email", "is required"}, FieldViolation{"profile.country", "unknown"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code %v", status.Code(err))
	}
	v := Violations(err)
	if len(v) != 2 || v[0].Field != "contact.email" || v[1].Description != "unknown" {
		t.Fatalf("violations %v", v)
	}
}

// rawCodec sends bytes as they are, so a test can send what no client
// library would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// A request that does not decode and that auth refuses leaves nothing
// behind: its decode error used to stay recorded for ever, so callers
// without a token could grow the server's memory at will.
func TestARefusedRequestLeavesNothingRecorded(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), v)
	intakev1.RegisterIntakeServiceServer(s.Server, intakev1.UnimplementedIntakeServiceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bad := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff}) // lead_id, not UTF-8
	for range 20 {
		var out []byte
		err := conn.Invoke(t.Context(), "/leadflow.intake.v1.IntakeService/GetLead", &bad, &out)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no token: %v, want Unauthenticated", err)
		}
	}
	n := 0
	s.rec.bad.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d refused requests' decode errors still recorded", n)
	}
}

// The lifecycle's errors reach callers as what they are: a refused
// transition names the state, a bad field is the caller's; anything else
// is internal, its text kept in the log.
func TestStatusMapsLifecycleErrors(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		err  error
		code codes.Code
		text string
	}{
		// Named as the caller sent it, not as the state machine calls it.
		{&lifecycle.RefusedError{Command: lifecycle.Accept, Status: lifecycle.StatusNew, Reason: "not assigned"}, codes.FailedPrecondition, "AcceptLead refused in NEW: not assigned"},
		{fmt.Errorf("absorbed lead a: %w", &lifecycle.RefusedError{Command: lifecycle.Merge, Status: lifecycle.StatusOpportunity, Reason: "open deal"}),
			codes.FailedPrecondition, "absorbed lead a: AcceptLead refused in OPPORTUNITY: open deal"},
		{&lifecycle.InvalidCommandError{Command: lifecycle.Convert, Field: "due", Reason: "must be after now"}, codes.InvalidArgument, "due must be after now"},
		// Maybe stored: to send again, not a server bug (nurture answered INTERNAL).
		{fmt.Errorf("commit: %w", eventstore.ErrUnknownOutcome), codes.Unavailable, "send the same request again"},
		// JetStream took nothing (a stream between leaders): a client's
		// retry policy retries UNAVAILABLE, not INTERNAL.
		{fmt.Errorf("load: %w", nats.ErrNoResponders), codes.Unavailable, "JetStream is unavailable"},
		{fmt.Errorf("load: %w", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}), codes.Unavailable, "send the same request again"},
		{io.ErrUnexpectedEOF, codes.Internal, "internal error"},
	} {
		st, _ := status.FromError(Status(context.Background(), log, "AcceptLead", c.err))
		if st.Code() != c.code || !strings.Contains(st.Message(), c.text) {
			t.Errorf("%v: %s %q, want %s naming %q", c.err, st.Code(), st.Message(), c.code, c.text)
		}
	}
}
