package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

type env struct {
	cfg    Config
	nats   *testenv.NATS
	client intakev1.IntakeServiceClient
	conn   *grpc.ClientConn
}

func hexKey(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// start runs the real service (run, as main calls it) on a free port
// against an embedded JetStream, and dials it.
func start(t testing.TB) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- run(ctx, cfg, log, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service did not start")
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return &env{cfg: cfg, nats: n, client: intakev1.NewIntakeServiceClient(conn), conn: conn}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lead(email string) *intakev1.CaptureLeadRequest {
	return &intakev1.CaptureLeadRequest{
		Contact:     &eventv1.Contact{Email: email, FirstName: "Ada", LastName: "Lovelace", Phone: "+44 20 7946 0958"},
		Profile:     &eventv1.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 250, Country: "gb"},
		Attribution: &eventv1.Attribution{Source: "web-form", UtmSource: "newsletter"},
	}
}

func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	st, err := e.nats.JS.Stream(ctxT(t), "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestCaptureAndReadBackFromTheStream(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	res, err := e.client.CaptureLead(ctx, lead("Ada@Example.COM "))
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED || res.GetLeadId() == "" || res.GetVersion() == 0 {
		t.Fatalf("capture: %v", res)
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if l.GetContact().GetEmail() != "ada@example.com" || l.GetContact().GetPhone() != "+442079460958" {
		t.Errorf("contact not normalized or not opened: %v", l.GetContact())
	}
	if l.GetProfile().GetCountry() != "GB" || l.GetProfile().GetEmailDomain() != "example.com" {
		t.Errorf("profile: %v", l.GetProfile())
	}
	lc := l.GetLifecycle()
	if lc.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW || lc.GetOwner().GetId() != "qualification" || lc.GetDeadline() == nil {
		t.Errorf("a new lead needs status NEW, an owner and a deadline: %v", lc)
	}
	if l.GetVersion() != res.GetVersion() || l.GetSubmissions() != 1 {
		t.Errorf("version %d submissions %d", l.GetVersion(), l.GetSubmissions())
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.GetEntries()) != 1 || tl.GetEntries()[0].GetEvent().GetEventType() != "LeadCaptured" ||
		!strings.Contains(tl.GetEntries()[0].GetSummary(), "captured from web-form") {
		t.Fatalf("timeline: %v", tl)
	}
	// Personal data never reaches the stream in the clear.
	raw, err := e.nats.JS.Stream(ctx, "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := raw.GetMsg(ctx, tl.GetEntries()[0].GetSequence())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ada@example.com", "Lovelace", "7946"} {
		if strings.Contains(string(msg.Data), secret) || strings.Contains(fmt.Sprint(msg.Header), secret) || strings.Contains(msg.Subject, secret) {
			t.Errorf("%q is in the stream in the clear", secret)
		}
	}
}

func TestSameEmailIsOneLead(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	first, err := e.client.CaptureLead(ctx, lead("grace@navy.mil"))
	if err != nil {
		t.Fatal(err)
	}
	again := lead("  GRACE@navy.MIL")
	again.Contact.FirstName, again.Contact.LastName, again.Contact.Phone = "", "", ""
	again.Profile = &eventv1.Profile{Title: "Rear Admiral"}
	second, err := e.client.CaptureLead(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if second.GetLeadId() != first.GetLeadId() || second.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("second capture: %v, first lead %s", second, first.GetLeadId())
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: first.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	// The later submission adds what it says and keeps the rest.
	l := got.GetLead()
	if l.GetSubmissions() != 2 || l.GetProfile().GetTitle() != "Rear Admiral" || l.GetProfile().GetCompany() != "Analytical Engines" ||
		l.GetContact().GetFirstName() != "Ada" || l.GetContact().GetEmail() != "grace@navy.mil" {
		t.Fatalf("lead after resubmission: %v", l)
	}
	// The same external id from another email is the same person too.
	byExt := lead("other@navy.mil")
	byExt.ExternalId = &eventv1.ExternalId{System: "hubspot", Id: "42"}
	a, err := e.client.CaptureLead(ctx, byExt)
	if err != nil {
		t.Fatal(err)
	}
	byExt2 := lead("third@navy.mil")
	byExt2.ExternalId = &eventv1.ExternalId{System: "hubspot", Id: "42"}
	b, err := e.client.CaptureLead(ctx, byExt2)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetLeadId() != b.GetLeadId() || b.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("external id dedupe: %v then %v", a, b)
	}
}

func TestIdempotencyKeyReturnsTheFirstAnswer(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	req := lead("linus@kernel.org")
	req.IdempotencyKey = "form-7f3a"
	first, err := e.client.CaptureLead(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	before := e.streamMsgs(t)
	for range 3 {
		// A retry, even one that changed the title, is the first request again.
		retry := lead("linus@kernel.org")
		retry.Profile.Title = "Chief Penguin"
		retry.IdempotencyKey = "form-7f3a"
		again, err := e.client.CaptureLead(ctx, retry)
		if err != nil {
			t.Fatal(err)
		}
		if again.GetLeadId() != first.GetLeadId() || !again.GetReplayed() || again.GetOutcome() != first.GetOutcome() {
			t.Fatalf("retry answered %v, first %v", again, first)
		}
	}
	if after := e.streamMsgs(t); after != before {
		t.Fatalf("retries wrote %d messages", after-before)
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: first.GetLeadId()})
	if err != nil || got.GetLead().GetSubmissions() != 1 || got.GetLead().GetProfile().GetTitle() == "Chief Penguin" {
		t.Fatalf("retries changed the lead: %v %v", got, err)
	}
	// A key used for a resubmission replays as a resubmission.
	resub := lead("linus@kernel.org")
	resub.IdempotencyKey = "form-8000"
	r1, err := e.client.CaptureLead(ctx, resub)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.client.CaptureLead(ctx, resub)
	if err != nil {
		t.Fatal(err)
	}
	if r1.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED || !r2.GetReplayed() || r2.GetOutcome() != r1.GetOutcome() || r1.GetReplayed() {
		t.Fatalf("resubmission replay: %v then %v", r1, r2)
	}
}

// Captures of one email racing from many clients make exactly one lead;
// every other capture is recorded on it.
func TestConcurrentCapturesOfOneEmailMakeOneLead(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	const racers = 16
	var wg sync.WaitGroup
	results := make([]*intakev1.CaptureLeadResponse, racers)
	errs := make([]error, racers)
	startGun := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-startGun
			results[i], errs[i] = e.client.CaptureLead(ctx, lead("race@example.org"))
		})
	}
	close(startGun)
	wg.Wait()
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if r.GetLeadId() != results[0].GetLeadId() {
			t.Fatalf("two leads for one email: %s and %s", r.GetLeadId(), results[0].GetLeadId())
		}
		if r.GetOutcome() == intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d captures created the lead, want 1", created)
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: results[0].GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.GetEntries()) != racers {
		t.Fatalf("timeline has %d events, want %d", len(tl.GetEntries()), racers)
	}
}

func TestInvalidInputIsRefusedAndWritesNothing(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	if _, err := e.client.RegisterCampaign(ctx, &intakev1.RegisterCampaignRequest{CampaignId: "spring-26", Name: "Spring", Channel: eventv1.Channel_CHANNEL_WEBINAR}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		edit  func(*intakev1.CaptureLeadRequest)
		field string
	}{
		{"missing email", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "" }, "contact.email"},
		{"bad email", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "not-an-email" }, "contact.email"},
		{"email with display name", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "Ada <ada@example.com>" }, "contact.email"},
		{"email without dot domain", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "ada@localhost" }, "contact.email"},
		{"long first name", func(r *intakev1.CaptureLeadRequest) { r.Contact.FirstName = strings.Repeat("a", 101) }, "contact.first_name"},
		{"control character", func(r *intakev1.CaptureLeadRequest) { r.Contact.LastName = "Love\x00lace" }, "contact.last_name"},
		{"bad phone", func(r *intakev1.CaptureLeadRequest) { r.Contact.Phone = "call me maybe" }, "contact.phone"},
		{"short phone", func(r *intakev1.CaptureLeadRequest) { r.Contact.Phone = "+1234" }, "contact.phone"},
		{"long notes", func(r *intakev1.CaptureLeadRequest) { r.Contact.Notes = strings.Repeat("ü", 2001) }, "contact.notes"},
		{"bad country", func(r *intakev1.CaptureLeadRequest) { r.Profile.Country = "XX" }, "profile.country"},
		{"negative employees", func(r *intakev1.CaptureLeadRequest) { r.Profile.Employees = -1 }, "profile.employees"},
		{"unknown seniority", func(r *intakev1.CaptureLeadRequest) { r.Profile.Seniority = 99 }, "profile.seniority"},
		{"missing source", func(r *intakev1.CaptureLeadRequest) { r.Attribution.Source = "" }, "attribution.source"},
		{"bad source", func(r *intakev1.CaptureLeadRequest) { r.Attribution.Source = "Web Form!" }, "attribution.source"},
		{"unknown campaign", func(r *intakev1.CaptureLeadRequest) { r.Attribution.CampaignId = "autumn-99" }, "attribution.campaign_id"},
		{"campaign id with a subject wildcard", func(r *intakev1.CaptureLeadRequest) { r.Attribution.CampaignId = "a.>" }, "attribution.campaign_id"},
		{"external id without system", func(r *intakev1.CaptureLeadRequest) { r.ExternalId = &eventv1.ExternalId{Id: "9"} }, "external_id.system"},
		{"consent without status", func(r *intakev1.CaptureLeadRequest) {
			r.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}
		}, "consents[0].status"},
		{"idempotency key with spaces", func(r *intakev1.CaptureLeadRequest) { r.IdempotencyKey = "a b" }, "idempotency_key"},
		{"future time", func(r *intakev1.CaptureLeadRequest) { r.OccurredAt = timestamp(time.Now().Add(time.Hour)) }, "occurred_at"},
		{"actor without kind", func(r *intakev1.CaptureLeadRequest) { r.Actor = &eventv1.Actor{Id: "zapier"} }, "actor.kind"},
	}
	before := e.streamMsgs(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := lead("valid@example.com")
			c.edit(req)
			_, err := e.client.CaptureLead(ctx, req)
			assertField(t, err, c.field)
		})
	}
	if after := e.streamMsgs(t); after != before {
		t.Fatalf("refused requests wrote %d messages", after-before)
	}
	res, err := e.client.CaptureLead(ctx, lead("valid@example.com"))
	if err != nil || res.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("the valid request after the refusals: %v %v", res, err)
	}
}

func assertField(t *testing.T, err error, field string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	for _, v := range grpcserver.Violations(err) {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("no violation for %s in %v", field, grpcserver.Violations(err))
}

// rawCodec sends bytes as they are, to put what a proto library refuses
// to encode (invalid UTF-8) on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	e := start(t)
	// CaptureLeadRequest{contact: Contact{email: "\xff@x.com"}}
	contact := protowire.AppendTag(nil, 1, protowire.BytesType)
	contact = protowire.AppendBytes(contact, []byte("\xff@x.com"))
	req := protowire.AppendTag(nil, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, contact)
	before := e.streamMsgs(t)
	err := e.conn.Invoke(ctxT(t), intakev1.IntakeService_CaptureLead_FullMethodName, &req, &intakev1.CaptureLeadResponse{}, grpc.ForceCodecV2(rawCodec{}))
	assertField(t, err, "contact.email")
	if e.streamMsgs(t) != before {
		t.Fatal("a refused request wrote")
	}
}

func TestBulkImport(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	existing, err := e.client.CaptureLead(ctx, lead("known@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 700 // more than two chunks
	go func() {
		for i := range rows {
			var r *intakev1.CaptureLeadRequest
			switch {
			case i == 5:
				r = lead("known@example.com") // an existing lead
			case i == 10 || i == 400:
				r = lead("twice@example.com") // the same person twice, in two chunks
			case i == 11:
				r = lead("twice@example.com") // ... and twice in one chunk
			case i%100 == 7:
				r = lead("broken") // refused
			default:
				r = lead(fmt.Sprintf("row%d@example.com", i))
			}
			if i == 20 {
				r.IdempotencyKey = "row-20"
			}
			if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i), Lead: r}); err != nil {
				t.Error(err)
				return
			}
		}
		_ = stream.CloseSend()
	}()
	var got []*intakev1.ImportLeadsResponse
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != rows {
		t.Fatalf("%d results for %d rows", len(got), rows)
	}
	leads := map[string]bool{}
	for i, r := range got {
		if r.GetRow() != int64(i) {
			t.Fatalf("result %d is for row %d", i, r.GetRow())
		}
		switch {
		case i%100 == 7:
			if len(r.GetErrors()) == 0 || r.GetErrors()[0].GetField() != "contact.email" || r.GetLeadId() != "" {
				t.Errorf("row %d should be refused: %v", i, r)
			}
		case i == 5:
			if r.GetLeadId() != existing.GetLeadId() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
				t.Errorf("row 5 should resubmit on %s: %v", existing.GetLeadId(), r)
			}
		case i == 11 || i == 400:
			if r.GetLeadId() != got[10].GetLeadId() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
				t.Errorf("row %d should resubmit on row 10's lead %s: %v", i, got[10].GetLeadId(), r)
			}
		default:
			if r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED || leads[r.GetLeadId()] {
				t.Errorf("row %d should create a new lead: %v", i, r)
			}
			leads[r.GetLeadId()] = true
		}
	}
	l, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: got[10].GetLeadId()})
	if err != nil || l.GetLead().GetSubmissions() != 3 || l.GetLead().GetContact().GetEmail() != "twice@example.com" {
		t.Fatalf("the twice-imported lead: %v %v", l, err)
	}
	// Import again: every valid row is now known, nothing is new.
	stream2, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream2.Send(&intakev1.ImportLeadsRequest{Row: 1, Lead: lead("row1@example.com")}); err != nil {
		t.Fatal(err)
	}
	r20 := lead("row20@example.com")
	r20.IdempotencyKey = "row-20"
	if err := stream2.Send(&intakev1.ImportLeadsRequest{Row: 20, Lead: r20}); err != nil {
		t.Fatal(err)
	}
	_ = stream2.CloseSend()
	a, err := stream2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	b, err := stream2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if a.GetLeadId() != got[1].GetLeadId() || a.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Errorf("re-import of row 1: %v", a)
	}
	if b.GetLeadId() != got[20].GetLeadId() || !b.GetReplayed() {
		t.Errorf("re-import of row 20 with its key: %v", b)
	}
}

func TestActivityCampaignsAndConsent(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	reg := &intakev1.RegisterCampaignRequest{CampaignId: "webinar-q4", Name: "Q4 webinar", Channel: eventv1.Channel_CHANNEL_WEBINAR,
		Budget: &eventv1.Money{Currency: "EUR", MinorUnits: 500000}}
	if _, err := e.client.RegisterCampaign(ctx, reg); err != nil {
		t.Fatal(err)
	}
	again, err := e.client.RegisterCampaign(ctx, reg)
	if err != nil || !again.GetReplayed() {
		t.Fatalf("same registration again: %v %v", again, err)
	}
	other := &intakev1.RegisterCampaignRequest{CampaignId: "webinar-q4", Name: "Something else", Channel: eventv1.Channel_CHANNEL_EMAIL}
	if _, err := e.client.RegisterCampaign(ctx, other); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("taken campaign id: %v", err)
	}
	cost := &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-1", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 120000}}
	c1, err := e.client.RecordCampaignCost(ctx, cost)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.client.RecordCampaignCost(ctx, cost)
	if err != nil || !c2.GetReplayed() || c2.GetVersion() != c1.GetVersion() {
		t.Fatalf("repeated cost: %v %v", c2, err)
	}
	if _, err := e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "nope", CostId: "x", Amount: cost.Amount}); status.Code(err) != codes.NotFound {
		t.Fatalf("cost on unknown campaign: %v", err)
	}

	req := lead("mary@example.com")
	req.Attribution.CampaignId = "webinar-q4"
	req.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	res, err := e.client.CaptureLead(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	act := &intakev1.RecordActivityRequest{LeadId: res.GetLeadId(), ActivityId: "click-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, CampaignId: "webinar-q4"}
	a1, err := e.client.RecordActivity(ctx, act)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := e.client.RecordActivity(ctx, act)
	if err != nil || !a2.GetReplayed() || a2.GetVersion() != a1.GetVersion() {
		t.Fatalf("repeated activity: %v %v", a2, err)
	}
	if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: "0199aaaa-0000-7000-8000-000000000000", ActivityId: "a", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); status.Code(err) != codes.NotFound {
		t.Fatalf("activity on unknown lead: %v", err)
	}
	_, err = e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: res.GetLeadId(), ActivityId: "a"})
	assertField(t, err, "type")

	withdraw := &intakev1.SetConsentRequest{LeadId: res.GetLeadId(), Source: "preference-center", IdempotencyKey: "pc-1",
		Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}
	if _, err := e.client.SetConsent(ctx, withdraw); err != nil {
		t.Fatal(err)
	}
	if r, err := e.client.SetConsent(ctx, withdraw); err != nil || !r.GetReplayed() {
		t.Fatalf("repeated consent: %v %v", r, err)
	}
	_, err = e.client.SetConsent(ctx, &intakev1.SetConsentRequest{LeadId: res.GetLeadId(), Source: "x", Consent: &eventv1.Consent{Channel: 42, Status: 1}})
	assertField(t, err, "consent.channel")

	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if l.GetActivities() != 1 || len(l.GetConsents()) != 1 || l.GetConsents()[0].GetStatus() != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
		t.Fatalf("lead: activities %d consents %v", l.GetActivities(), l.GetConsents())
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, en := range tl.GetEntries() {
		types = append(types, en.GetEvent().GetEventType())
		if en.GetEvent().GetCorrelationId() == "" || en.GetEvent().GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW {
			t.Errorf("envelope incomplete: %v", en.GetEvent())
		}
	}
	if !slices.Equal(types, []string{"LeadCaptured", "ActivityRecorded", "ConsentChanged"}) {
		t.Fatalf("timeline %v", types)
	}
}

// The server stops and starts on the same folder mid-run: acknowledged
// leads are all there and the service goes on without a restart.
func TestServerRestartLosesNothing(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	var ids []string
	for i := range 20 {
		r, err := e.client.CaptureLead(ctx, lead(fmt.Sprintf("before%d@example.com", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetLeadId())
	}
	e.nats.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.client.CaptureLead(ctx, lead("after@example.com"))
		if err == nil {
			ids = append(ids, r.GetLeadId())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no capture after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range ids {
		got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: id})
		if err != nil || got.GetLead().GetContact().GetEmail() == "" {
			t.Fatalf("lead %s after restart: %v %v", id, got, err)
		}
	}
	// Identities survived too: the first email still dedupes.
	r, err := e.client.CaptureLead(ctx, lead("before0@example.com"))
	if err != nil || r.GetLeadId() != ids[0] {
		t.Fatalf("dedupe after restart: %v %v", r, err)
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// A capture that claimed an email and died before writing the lead's first
// event leaves a claim with no lead behind. The next captures of that
// email, even racing ones, adopt it: one lead, under the claimed id.
func TestClaimWithoutEventIsAdopted(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	master, _ := hex.DecodeString(e.cfg.MasterKey)
	blind, _ := hex.DecodeString(e.cfg.BlindKey)
	v, err := vault.New(ctx, e.nats.JS, vault.Config{MasterKey: master, BlindKey: blind})
	if err != nil {
		t.Fatal(err)
	}
	orphan := "0199aaaa-0000-7000-8000-00000000abcd"
	store := eventstore.New(e.nats.JS, "LEADFLOW")
	if _, err := store.Commit(ctx, eventstore.Write{
		Subject: eventstore.ClaimSubject("email", v.Blind("email", "crash@example.com")),
		Claim:   &eventv1.Claim{LeadId: orphan, EventId: "claim-email-" + orphan},
	}); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var wg sync.WaitGroup
	res := make([]*intakev1.CaptureLeadResponse, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { res[i], errs[i] = e.client.CaptureLead(ctx, lead("crash@example.com")) })
	}
	wg.Wait()
	created := 0
	for i := range racers {
		if errs[i] != nil || res[i].GetLeadId() != orphan {
			t.Fatalf("racer %d: %v %v, want lead %s", i, res[i], errs[i], orphan)
		}
		if res[i].GetOutcome() == intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d racers created the lead", created)
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: orphan})
	if err != nil || got.GetLead().GetSubmissions() != racers || got.GetLead().GetContact().GetEmail() != "crash@example.com" {
		t.Fatalf("adopted lead: %v %v", got, err)
	}
}
