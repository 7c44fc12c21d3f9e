package grpcserver

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
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
