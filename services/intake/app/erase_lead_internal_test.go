package app

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Erasure finds a lead's keys by field name: every bytes field of an
// event must be sealed data and named so, or its key would survive.
func TestEveryBytesFieldOfAnEventIsSealed(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			switch fd.Kind() {
			case protoreflect.BytesKind:
				if !strings.HasPrefix(string(fd.Name()), "sealed") {
					t.Errorf("%s is bytes but not named sealed*: erasure would not shred its key", fd.FullName())
				}
			case protoreflect.MessageKind:
				walk(fd.Message())
			}
		}
	}
	walk((&eventv1.Event{}).ProtoReflect().Descriptor())
	if !seen["leadflow.event.v1.ActivityRecorded"] || !seen["leadflow.event.v1.LeadResubmitted"] {
		t.Fatal("the walk missed payloads: the check is blind")
	}
}

func TestSealedKeyIDs(t *testing.T) {
	// Format 3: version, 8-byte block id, 2-byte slot, nonce, sealed body.
	sealed := func(block byte, slot byte) []byte {
		b := make([]byte, 1+8+2+12+16+4)
		b[0], b[1], b[10] = 3, block, slot
		return b
	}
	rec := func(ev *eventv1.Event) eventstore.Record { return eventstore.Record{Event: ev} }
	recs := []eventstore.Record{
		rec(&eventv1.Event{Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{
			SealedContact: sealed(1, 0), SealedPersonal: sealed(1, 0)}}}),
		rec(&eventv1.Event{Payload: &eventv1.Event_ActivityRecorded{ActivityRecorded: &eventv1.ActivityRecorded{
			SealedDetail: sealed(2, 7)}}}),
		rec(&eventv1.Event{Payload: &eventv1.Event_LeadResubmitted{LeadResubmitted: &eventv1.LeadResubmitted{
			SealedPersonal: []byte("not sealed data")}}}),
	}
	got := sealedKeyIDs(recs)
	want := []string{"01000000000000000000", "02000000000000000007"}
	if !slices.Equal(got, want) {
		t.Fatalf("sealedKeyIDs = %v, want %v (each key once, in order)", got, want)
	}
}
