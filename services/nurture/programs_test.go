package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// Programs are data: every change is a NurtureProgramChanged on
// model.nurture-programs with the next version, each program counts its
// revisions, a put that changes nothing writes nothing, a built-in can be
// replaced, and a retired program comes back with a put.
func TestProgramsAreVersionedEvents(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	list, err := s.client.ListPrograms(ctx, &nurturev1.ListProgramsRequest{})
	if err != nil || list.GetVersion() != 0 || len(list.GetPrograms()) != len(program.BuiltIns()) {
		t.Fatalf("built-ins: %v %v", list, err)
	}
	p := recyclePrograms()[0]
	r := put(t, s.client, p)
	if r.GetVersion() != 1 || r.GetProgram().GetProgram().GetRevision() != 1 || r.GetUnchanged() ||
		r.GetProgram().GetSource() != nurturev1.ProgramSource_PROGRAM_SOURCE_DEFINED || r.GetProgram().GetChangedBy().GetId() != "mia" {
		t.Fatalf("first put: %v", r)
	}
	if r := put(t, s.client, p); !r.GetUnchanged() || r.GetVersion() != 1 {
		t.Fatalf("same again: %v", r)
	}
	p2 := proto.CloneOf(p)
	p2.Duration = days(90)
	if r := put(t, s.client, p2); r.GetVersion() != 2 || r.GetProgram().GetProgram().GetRevision() != 2 {
		t.Fatalf("change: %v", r)
	}
	def := program.BuiltIns()[0]
	def.Duration = days(30)
	if r := put(t, s.client, def); r.GetProgram().GetProgram().GetRevision() != 1 || r.GetProgram().GetSource() != nurturev1.ProgramSource_PROGRAM_SOURCE_DEFINED {
		t.Fatalf("replace the default: %v", r)
	}
	ret, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: p.GetProgramId(), ChangedBy: marketer})
	if err != nil || !ret.GetProgram().GetProgram().GetRetired() || ret.GetProgram().GetProgram().GetRevision() != 3 {
		t.Fatalf("retire: %v %v", ret, err)
	}
	if again, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: p.GetProgramId(), ChangedBy: marketer}); err != nil || !again.GetUnchanged() {
		t.Fatalf("retire again: %v %v", again, err)
	}
	builtIns := len(program.BuiltIns())
	if list, _ := s.client.ListPrograms(ctx, &nurturev1.ListProgramsRequest{}); len(list.GetPrograms()) != builtIns {
		t.Fatalf("a retired program is listed: %v", list)
	}
	if list, _ := s.client.ListPrograms(ctx, &nurturev1.ListProgramsRequest{IncludeRetired: true}); len(list.GetPrograms()) != builtIns+1 {
		t.Fatalf("include retired: %v", list)
	}
	if r := put(t, s.client, p2); r.GetProgram().GetProgram().GetRetired() || r.GetProgram().GetProgram().GetRevision() != 4 {
		t.Fatalf("put a retired program: %v", r)
	}
	recs, err := w.store.Load(ctx, adapters.ProgramsSubject)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for i, rec := range recs {
		ch := rec.Event.GetNurtureProgramChanged()
		if ch.GetVersion() != uint32(i+1) || rec.Event.GetActor().GetId() != "mia" {
			t.Fatalf("change %d: %v", i, rec.Event)
		}
		changes = append(changes, ch.GetProgram().GetProgramId()+" "+strings.TrimPrefix(ch.GetChange().String(), "NURTURE_PROGRAM_CHANGE_"))
	}
	want := []string{"smb-warm DEFINED", "smb-warm UPDATED", "nurture-default DEFINED", "smb-warm RETIRED", "smb-warm UPDATED"}
	if !slices.Equal(changes, want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
}

// Bad input is refused with INVALID_ARGUMENT naming the field, or
// FAILED_PRECONDITION naming the state, and writes nothing: not to the
// programs, not to any lead.
func TestBadInputWritesNothing(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	base := recyclePrograms()[0]
	put(t, s.client, base)
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "spring", Name: "Spring campaign", Duration: days(30),
		ExitRules: &eventv1.NurtureExitRules{ThenProgramId: "smb-warm"}})
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "old", Name: "Old", Duration: days(30)})
	if _, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: "old", ChangedBy: marketer}); err != nil {
		t.Fatal(err)
	}

	won, erased, mql, accepted := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.accepted(t, won, "smb", 30)
	w.write(t, won, lifecycle.Command{Name: lifecycle.Convert}, &eventv1.OpportunityCreated{OpportunityId: "o1"})
	w.write(t, won, lifecycle.Command{Name: lifecycle.Win}, &eventv1.DealWon{OpportunityId: "o1"})
	w.capture(t, erased)
	w.write(t, erased, lifecycle.Command{Name: lifecycle.Erase}, &eventv1.LeadErased{Reason: "request"})
	w.capture(t, mql)
	w.write(t, mql, lifecycle.Command{Name: lifecycle.Score, Score: 70},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 70, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	w.write(t, mql, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 70, Threshold: 50})
	w.accepted(t, accepted, "smb", 30)
	w.settle(t, group)

	withRule := func(rules ...*eventv1.NurtureEntryRule) *eventv1.NurtureProgram {
		return &eventv1.NurtureProgram{ProgramId: "new-one", Name: "New", Duration: days(30), EntryRules: rules}
	}
	smb := func(id string) *eventv1.NurtureEntryRule {
		return &eventv1.NurtureEntryRule{RuleId: id, Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}
	}
	putReq := func(p *eventv1.NurtureProgram) func() error {
		return func() error {
			_, err := s.client.PutProgram(ctx, &nurturev1.PutProgramRequest{Program: p, ChangedBy: marketer})
			return err
		}
	}
	lost := func(r *nurturev1.FindLostLeadsRequest) func() error {
		return func() error {
			_, err := s.client.FindLostLeads(ctx, r)
			return err
		}
	}
	recycle := func(r *nurturev1.RecycleLeadRequest) func() error {
		return func() error {
			if r.Actor == nil {
				r.Actor = marketer
			}
			_, err := s.client.RecycleLead(ctx, r)
			return err
		}
	}
	for _, c := range []struct {
		name  string
		call  func() error
		code  codes.Code
		field string // for INVALID_ARGUMENT
		says  string // in the message or the field's description
	}{
		{"entry rule overlaps another program's", putReq(withRule(smb("r1"))), codes.InvalidArgument, "program.entry_rules[0]", `rule "smb-low" of program "smb-warm"`},
		{"entry rules overlap each other", putReq(withRule(
			&eventv1.NurtureEntryRule{RuleId: "a", Causes: []eventv1.RecycleCause{lostCause}, ScoreBand: &eventv1.NurtureScoreBand{Min: 0, Max: 50}},
			&eventv1.NurtureEntryRule{RuleId: "b", ScoreBand: &eventv1.NurtureScoreBand{Min: 40, Max: 90}})),
			codes.InvalidArgument, "program.entry_rules[1]", "score 40 to 50"},
		{"no duration", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X"}), codes.InvalidArgument, "program.duration", "required"},
		// It would send each lead out and in again every second, for good.
		{"a program of a second", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: durationpb.New(time.Second)}),
			codes.InvalidArgument, "program.duration", "between 1 day and"},
		{"a program of an hour", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: durationpb.New(time.Hour)}),
			codes.InvalidArgument, "program.duration", "between 1 day and"},
		{"reject reasons without REJECTED", putReq(withRule(&eventv1.NurtureEntryRule{RuleId: "a", Causes: []eventv1.RecycleCause{lostCause},
			RejectReasons: []eventv1.RejectReason{eventv1.RejectReason_REJECT_REASON_NO_BUDGET}})), codes.InvalidArgument, "program.entry_rules[0].reject_reasons", "REJECTED"},
		{"score band upside down", putReq(withRule(&eventv1.NurtureEntryRule{RuleId: "a", Causes: []eventv1.RecycleCause{lostCause},
			ScoreBand: &eventv1.NurtureScoreBand{Min: 60, Max: 10}})), codes.InvalidArgument, "program.entry_rules[0].score_band", "above max"},
		{"unknown next program", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: days(3),
			ExitRules: &eventv1.NurtureExitRules{ThenProgramId: "nowhere"}}), codes.InvalidArgument, "program.exit_rules.then_program_id", "unknown program"},
		{"retired next program", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: days(3),
			ExitRules: &eventv1.NurtureExitRules{ThenProgramId: "old"}}), codes.InvalidArgument, "program.exit_rules.then_program_id", "retired"},
		{"unsubscribe re-engages", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: days(3),
			ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE}}}),
			codes.InvalidArgument, "program.exit_rules.reengage_on[0]", "unsubscribe"},
		{"bad program id", putReq(&eventv1.NurtureProgram{ProgramId: "Spring Promo", Name: "X", Duration: days(3)}), codes.InvalidArgument, "program.program_id", "lower-case"},
		{"revision set", putReq(&eventv1.NurtureProgram{ProgramId: "x", Name: "X", Duration: days(3), Revision: 7}), codes.InvalidArgument, "program.revision", "assigned"},
		{"nobody changes it", func() error {
			_, err := s.client.PutProgram(ctx, &nurturev1.PutProgramRequest{Program: base})
			return err
		}, codes.InvalidArgument, "changed_by", "required"},
		{"retire an unknown program", func() error {
			_, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: "nowhere", ChangedBy: marketer})
			return err
		}, codes.NotFound, "", "nowhere"},
		{"retire a built-in", func() error {
			_, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: program.DataRepair, ChangedBy: marketer})
			return err
		}, codes.FailedPrecondition, "", "recycle policy"},
		{"retire a program another sends leads to", func() error {
			_, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: "smb-warm", ChangedBy: marketer})
			return err
		}, codes.FailedPrecondition, "", `program "spring" sends its leads here`},
		{"get an unknown program", func() error {
			_, err := s.client.GetProgram(ctx, &nurturev1.GetProgramRequest{ProgramId: "nowhere"})
			return err
		}, codes.NotFound, "", "nowhere"},
		{"recycle into an unknown program", recycle(&nurturev1.RecycleLeadRequest{LeadId: accepted, Note: "n", ProgramId: "nowhere"}),
			codes.InvalidArgument, "program_id", "unknown program"},
		{"recycle into a retired program", recycle(&nurturev1.RecycleLeadRequest{LeadId: accepted, Note: "n", ProgramId: "old"}),
			codes.InvalidArgument, "program_id", "retired"},
		{"recycle without a note", recycle(&nurturev1.RecycleLeadRequest{LeadId: accepted}), codes.InvalidArgument, "note", "required"},
		{"recycle with a note naming the person", recycle(&nurturev1.RecycleLeadRequest{LeadId: accepted, Note: "ada@example.com asked to wait"}), codes.InvalidArgument, "note", "email"},
		{"recycle by a request id naming the person", recycle(&nurturev1.RecycleLeadRequest{LeadId: accepted, Note: "n", RequestId: "crm:grace@example.com"}),
			codes.InvalidArgument, "request_id", "email address"},
		{"recycle a won lead", recycle(&nurturev1.RecycleLeadRequest{LeadId: won, Note: "n"}), codes.FailedPrecondition, "", "lead is won, a terminal state"},
		{"recycle an erased lead", recycle(&nurturev1.RecycleLeadRequest{LeadId: erased, Note: "n"}), codes.FailedPrecondition, "", "lead is erased, a terminal state"},
		{"recycle an MQL", recycle(&nurturev1.RecycleLeadRequest{LeadId: mql, Note: "n"}), codes.FailedPrecondition, "", "RecycleLead refused in MQL"},
		{"recycle an unknown lead", recycle(&nurturev1.RecycleLeadRequest{LeadId: uuid.NewString(), Note: "n"}), codes.NotFound, "", "not found"},
		{"recycle a malformed lead id", recycle(&nurturev1.RecycleLeadRequest{LeadId: "lead.>", Note: "n"}), codes.InvalidArgument, "lead_id", "lead id"},
		// Out of a Timestamp's range, or a Duration whose parts disagree:
		// taken as they came, every lead was overdue.
		{"lost leads as of year 33658", lost(&nurturev1.FindLostLeadsRequest{AsOf: &timestamppb.Timestamp{Seconds: 1e12}}),
			codes.InvalidArgument, "as_of", "valid time"},
		{"lost leads with a malformed grace", lost(&nurturev1.FindLostLeadsRequest{OverdueGrace: &durationpb.Duration{Seconds: 5, Nanos: -1}}),
			codes.InvalidArgument, "overdue_grace", "valid duration"},
		{"lost leads with a negative claim grace", lost(&nurturev1.FindLostLeadsRequest{ClaimGrace: durationpb.New(-time.Minute)}),
			codes.InvalidArgument, "claim_grace", "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := w.streamLast(t)
			err := c.call()
			st := status.Convert(err)
			if st.Code() != c.code {
				t.Fatalf("got %v, want %s", err, c.code)
			}
			text := st.Message()
			if c.field != "" {
				var fields []string
				for _, v := range grpcserver.Violations(err) {
					fields = append(fields, v.Field)
					if v.Field == c.field {
						text = v.Description
					}
				}
				if !slices.Contains(fields, c.field) {
					t.Fatalf("violations on %v, want %s: %v", fields, c.field, err)
				}
			}
			if !strings.Contains(text, c.says) {
				t.Fatalf("%q does not say %q", text, c.says)
			}
			if after := w.streamLast(t); after != before {
				t.Fatalf("the stream moved from %d to %d", before, after)
			}
		})
	}
}

// streamLast is the stream's last sequence.
func (w *world) streamLast(t testing.TB) uint64 {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}
