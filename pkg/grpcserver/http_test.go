package grpcserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/devcert"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// fakeIntake answers the way the real services do: INVALID_ARGUMENT with
// field violations, NOT_FOUND, FAILED_PRECONDITION naming the state, and
// a panic the recovery interceptor turns into INTERNAL. It records the
// metadata of the calls it serves.
type fakeIntake struct {
	intakev1.UnimplementedIntakeServiceServer
	mu    sync.Mutex
	calls []metadata.MD
	rows  atomic.Int64 // ImportLeads rows received
}

func (f *fakeIntake) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, md)
	f.mu.Unlock()
}

func (f *fakeIntake) served() []metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]metadata.MD(nil), f.calls...)
}

func (f *fakeIntake) CaptureLead(ctx context.Context, req *intakev1.CaptureLeadRequest) (*intakev1.CaptureLeadResponse, error) {
	f.record(ctx)
	if req.GetContact().GetEmail() == "" {
		return nil, grpcserver.InvalidArgument("request is not valid", grpcserver.FieldViolation{Field: "contact.email", Description: "is required"})
	}
	return &intakev1.CaptureLeadResponse{LeadId: "lead-" + req.GetIdempotencyKey(), Outcome: intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED, Version: 7}, nil
}

func (f *fakeIntake) GetLead(ctx context.Context, req *intakev1.GetLeadRequest) (*intakev1.GetLeadResponse, error) {
	f.record(ctx)
	switch req.GetLeadId() {
	case "known":
		return &intakev1.GetLeadResponse{Lead: &intakev1.Lead{LeadId: "known", Submissions: 2}}, nil
	case "merged":
		return nil, status.Error(codes.FailedPrecondition, "lead merged: refused in MERGED")
	case "boom":
		panic("boom")
	case "huge":
		return &intakev1.GetLeadResponse{Lead: &intakev1.Lead{LeadId: "huge", Contact: &eventv1.Contact{Notes: strings.Repeat("n", 5<<20)}}}, nil
	}
	return nil, status.Error(codes.NotFound, "no lead "+req.GetLeadId())
}

func (f *fakeIntake) RecordActivity(ctx context.Context, req *intakev1.RecordActivityRequest) (*intakev1.RecordActivityResponse, error) {
	f.record(ctx)
	return &intakev1.RecordActivityResponse{LeadId: req.GetLeadId()}, nil
}

func (f *fakeIntake) ImportLeads(stream intakev1.IntakeService_ImportLeadsServer) error {
	f.record(stream.Context())
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetLead().GetContact().GetEmail() == "fail@example.com" {
			return status.Error(codes.Unavailable, "the store is away") // the rest of the body unread
		}
		f.rows.Add(1)
		res := &intakev1.ImportLeadsResponse{Row: req.GetRow(), LeadId: "lead-" + req.GetLead().GetContact().GetEmail()}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

// serve runs a server with the fake on 127.0.0.1:0 and HTTP/JSON beside
// it; stop cancels Serve and returns what it returned.
func serve(t *testing.T) (fake *fakeIntake, base string, stop func() error) {
	t.Helper()
	fake, _, web, stop := serveOn(t)
	return fake, "http://" + web.String(), stop
}

// serveOn is serve, returning the gRPC and HTTP addresses.
func serveOn(t *testing.T, opts ...grpcserver.Option) (fake *fakeIntake, grpcAddr, web net.Addr, stop func() error) {
	t.Helper()
	return serveLogging(t, io.Discard, opts...)
}

// serveLogging is serveOn, logging to w.
func serveLogging(t *testing.T, w io.Writer, opts ...grpcserver.Option) (fake *fakeIntake, grpcAddr, web net.Addr, stop func() error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(w, nil))
	srv := grpcserver.New(log, nil, opts...)
	fake = &fakeIntake{}
	intakev1.RegisterIntakeServiceServer(srv.Server, fake)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web, err = srv.ListenHTTP("127.0.0.1:0", intakev1.RegisterIntakeServiceHandler)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, 2*time.Second) }()
	var once sync.Once
	var served error
	stop = func() error {
		once.Do(func() { cancel(); served = <-done })
		return served
	}
	t.Cleanup(func() { _ = stop() })
	return fake, lis.Addr(), web, stop
}

func TestHTTPCallsGoThroughTheGRPCServer(t *testing.T) {
	fake, base, stop := serve(t)

	// lowerCamel JSON names and proto names are both accepted; the
	// answer uses lowerCamel and lists unset fields too.
	for _, body := range []string{`{"idempotencyKey":"k1","contact":{"email":"ada@example.com"}}`,
		`{"idempotency_key":"k1","contact":{"email":"ada@example.com","first_name":"Ada"}}`} {
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body, "X-Correlation-Id", "corr-1", "Authorization", "Bearer t0k")
		if code != 200 || out["leadId"] != "lead-k1" || out["outcome"] != "CAPTURE_OUTCOME_CREATED" || out["version"] != "7" || out["replayed"] != false {
			t.Fatalf("capture %s: %d %v", body, code, out)
		}
	}
	md := fake.served()[0]
	if got := md.Get(grpcserver.CorrelationHeader); len(got) != 1 || got[0] != "corr-1" {
		t.Errorf("correlation id in metadata: %v", md)
	}
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer t0k" {
		t.Errorf("authorization in metadata: %v", md)
	}
	// A correlation id too long to store is refused, not swapped for one
	// the caller never learns.
	calls := len(fake.served())
	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", `{"contact":{"email":"ada@example.com"}}`, "X-Correlation-Id", strings.Repeat("c", 129))
	if code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.Contains(toJSON(t, out["details"]), `"field":"x-correlation-id"`) {
		t.Fatalf("a 129-character correlation id: %d %v", code, out)
	}
	if n := len(fake.served()); n != calls {
		t.Fatalf("the call with a correlation id too long was served: %d calls, want %d", n, calls)
	}
	if code, _ := testenv.HTTPJSON(t, "POST", base+"/v1/leads", `{"contact":{"email":"ada@example.com"}}`, "X-Correlation-Id", strings.Repeat("c", 128)); code != 200 {
		t.Fatalf("a 128-character correlation id: %d", code)
	}
	// One the gateway would drop (gRPC metadata is printable ASCII), and
	// a field sent in the query of a route that reads only its body, are
	// refused too: the call would run without them (a retry's
	// idempotency key dropped is a duplicate capture).
	for _, c := range []struct{ path, header, field string }{
		{"/v1/leads", "commande-42-é", "x-correlation-id"},
		{"/v1/leads", "crm:grace@example.com", "x-correlation-id"}, // kept on every event, in the clear
		{"/v1/leads", "ok-1\x00bad-ü", "x-correlation-id"},         // a second value, after a good one
		{"/v1/leads?idempotencyKey=form-7", "", "idempotencyKey"},
		{"/v1/leads?zeta=1&alpha=2", "", "alpha"},
		{"/v1/leads?&", "", "query"}, // no parameter named: it panicked
	} {
		calls := len(fake.served())
		var h []string
		if first, second, two := strings.Cut(c.header, "\x00"); two {
			h = []string{"X-Correlation-Id", first, "X-Correlation-Id", second}
		} else if c.header != "" {
			h = []string{"X-Correlation-Id", c.header}
		}
		code, out := testenv.HTTPJSON(t, "POST", base+c.path, `{"contact":{"email":"ada@example.com"}}`, h...)
		if code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.Contains(toJSON(t, out["details"]), `"field":"`+c.field+`"`) {
			t.Fatalf("%s %q: %d %v, want %s refused", c.path, c.header, code, out, c.field)
		}
		if n := len(fake.served()); n != calls {
			t.Fatalf("%s %q was served", c.path, c.header)
		}
	}

	// The unbound path of a method that also has a REST path.
	if code, out := testenv.HTTPJSON(t, "POST", base+"/leadflow.intake.v1.IntakeService/GetLead", `{"leadId":"known"}`); code != 200 ||
		out["lead"].(map[string]any)["submissions"] != float64(2) {
		t.Fatalf("unbound GetLead: %d %v", code, out)
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/known", ""); code != 200 || out["lead"].(map[string]any)["leadId"] != "known" {
		t.Fatalf("GET lead: %d %v", code, out)
	}

	// Errors keep their gRPC status in the body.
	code, out = testenv.HTTPJSON(t, "POST", base+"/v1/leads", `{"contact":{}}`)
	if code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.Contains(toJSON(t, out["details"]), `"field":"contact.email"`) {
		t.Fatalf("invalid capture: %d %v", code, out)
	}
	// A value its field does not take is named in the API's words (an
	// enum's names, a time's form), not the parser's lines and columns.
	for body, want := range map[string]string{
		`{"contact":{"email":"a@b.example"},"consents":[{"channel":"FAX"}]}`: "consents[0].channel: must be one of CONSENT_CHANNEL_EMAIL, ",
		`{"contact":{"email":"a@b.example"},"occurredAt":"yesterday"}`:       "occurred_at: must be an RFC 3339 time",
		`{"contact":{"email":7}}`: "contact.email: must be a string",
		`{"contact":{"email":"a@b.example"},"consents":{"channel":"FAX"}}`:       "consents: must be a list",
		`{"contact":{"email":"a@b.example"},"profile":{"employees":3000000000}}`: "profile.employees: must be a whole number from -2147483648 to 2147483647",
	} {
		field, desc, _ := strings.Cut(want, ": ")
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body)
		if got := toJSON(t, out["details"]); code != 400 || !strings.Contains(got, `"field":"`+field+`"`) || !strings.Contains(got, `"description":"`+desc) ||
			!strings.Contains(out["message"].(string), want) || strings.Contains(got, "line 1") {
			t.Fatalf("%s: %d %s, want %s", body, code, got, want)
		}
	}
	// A path or query value that is not UTF-8 is the caller's to fix,
	// named, not the gateway's own client failing to encode it (INTERNAL).
	calls = len(fake.served())
	for url, field := range map[string]string{"/v1/leads/%FF": "lead_id", "/v1/leads/ab%C3/activities": "lead_id", "/v1/leads/known?x=%FF": "x"} {
		method := "GET"
		if strings.HasSuffix(url, "activities") {
			method = "POST"
		}
		code, out := testenv.HTTPJSON(t, method, base+url, "{}")
		if code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.Contains(toJSON(t, out["details"]), `"field":"`+field+`"`) {
			t.Fatalf("%s %s: %d %v; want a violation for %s", method, url, code, out, field)
		}
	}
	if n := len(fake.served()); n != calls {
		t.Fatalf("calls not UTF-8 were served: %d calls, want %d", n, calls)
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/nobody", ""); code != 404 || out["code"] != float64(codes.NotFound) {
		t.Fatalf("unknown lead: %d %v", code, out)
	}
	// A path served for another method is the caller's mistake: 405,
	// naming the methods served there (RFC 9110: Allow).
	// A custom method's path a GET route's pattern also matches
	// (":merge" taken for part of the id) is such a path too.
	for path, allow := range map[string]string{"/v1/leads": "POST", "/v1/leads/known": "GET", "/v1/leads/known/activities": "POST",
		"/v1/leads/known:merge": "POST"} {
		method := map[string]string{"POST": "GET", "GET": "DELETE"}[allow]
		code, header, body := testenv.HTTPWithHeader(t, method, base+path, "")
		if code != http.StatusMethodNotAllowed || !strings.Contains(body, fmt.Sprintf(`"code":%d`, codes.Unimplemented)) || header.Get("Allow") != allow {
			t.Fatalf("%s %s: %d Allow %q %s, want 405 Allow %q", method, path, code, header.Get("Allow"), body, allow)
		}
	}
	// A form POST (curl -d without a content type) to a GET route is not
	// served as the GET (grpc-gateway's path-length fallback): 405 too.
	for _, h := range []http.Header{{"Content-Type": {"application/x-www-form-urlencoded"}},
		{"Content-Type": {"application/x-www-form-urlencoded"}, "X-HTTP-Method-Override": {"GET"}}} {
		req, err := http.NewRequest("POST", base+"/v1/leads/known", strings.NewReader(`{"firstName":"Ada"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET" {
			t.Fatalf("form POST %v to a GET route: %d Allow %q, want 405 Allow GET", h, res.StatusCode, res.Header.Get("Allow"))
		}
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/merged", ""); code != 400 || out["code"] != float64(codes.FailedPrecondition) ||
		out["message"] != "lead merged: refused in MERGED" {
		t.Fatalf("refused: %d %v", code, out)
	}
	// The recovery interceptor runs for HTTP calls too.
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/boom", ""); code != 500 || out["code"] != float64(codes.Internal) {
		t.Fatalf("panic: %d %v", code, out)
	}
	// An answer over gRPC's default 4 MiB is sent, not blamed on a body.
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/huge", ""); code != 200 || out["lead"].(map[string]any)["leadId"] != "huge" {
		t.Fatalf("a 5 MiB answer: %d %v", code, out["message"])
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/healthz", ""); code != 200 || out["status"] != "SERVING" {
		t.Fatalf("healthz: %d %v", code, out)
	}

	// A field the request does not have, or JSON that does not decode,
	// is refused before any call; an unknown field by its path.
	calls = len(fake.served())
	for body, field := range map[string]string{
		`{"contact":{"email":"a@example.com"},"attribution":{"campaign":"spring"}}`:     "attribution.campaign",
		`{"contact":{"email":"a@example.com"},"consents":[{"channel":1},{"chanel":2}]}`: "consents[1].chanel",
	} {
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body)
		if msg, _ := out["message"].(string); code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.HasPrefix(msg, field+": unknown field") ||
			!strings.Contains(toJSON(t, out["details"]), `"field":"`+field+`"`) || !strings.Contains(toJSON(t, out["details"]), `"description":"unknown field`) {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	// A value its field's type does not take is named by its path too.
	for body, field := range map[string]string{
		`{"contact":{"email":"a@example.com"},"profile":{"employees":"lots"}}`:                "profile.employees",
		`{"contact":{"email":"a@example.com"},"profile":{"seniority":"SENIORITY_GOD"}}`:       "profile.seniority",
		`{"contact":{"email":"a@example.com"},"consents":[{"channel":1},{"channel":"NOPE"}]}`: "consents[1].channel",
		`{"contact":{"email":7}}`: "contact.email",
	} {
		// Its description does not say the field again, as a service's
		// own violations do not.
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body)
		if details := toJSON(t, out["details"]); code != 400 || out["code"] != float64(codes.InvalidArgument) || !strings.Contains(details, `"field":"`+field+`"`) ||
			strings.Contains(details, `"description":"`+field) {
			t.Fatalf("%s: %d %v, want a violation of %s", body, code, out, field)
		}
	}
	for _, body := range []string{`{"contact":{"email":"a@example.com"},"idempotencyKy":"k"}`, `{"contact":`} {
		if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body); code != 400 || out["code"] != float64(codes.InvalidArgument) {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	// A value too long is refused as it is read, never held whole.
	huge := `{"contact":{"email":"` + strings.Repeat("a", 17<<20) + `@example.com"}}`
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", huge); code != 400 || out["code"] != float64(codes.InvalidArgument) ||
		!strings.Contains(out["message"].(string), "over 16 MiB") {
		t.Fatalf("a 17 MiB value: %d %v", code, out["message"])
	}
	// One that decodes but is over gRPC's message limit is the caller's
	// to fix, not a 429 to retry.
	big := `{"contact":{"email":"a@example.com","notes":"` + strings.Repeat("n", 5<<20) + `"}}`
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", big); code != 400 || out["code"] != float64(codes.InvalidArgument) ||
		!strings.Contains(toJSON(t, out["details"]), `"field":"body"`) {
		t.Fatalf("a 5 MiB request: %d %v", code, out["message"])
	}
	if n := len(fake.served()); n != calls {
		t.Fatalf("a refused body reached the service: %d calls, want %d", n, calls)
	}
	// A body that names another lead than its path is refused, not
	// answered for the path's lead; the same lead, or none, is served.
	code, out = testenv.HTTPJSON(t, "POST", base+"/v1/leads/path-lead/activities", `{"leadId":"body-lead","activityId":"a1"}`)
	if msg, _ := out["message"].(string); code != 400 || out["code"] != float64(codes.InvalidArgument) ||
		!strings.Contains(msg, `lead_id: the body's "body-lead" is not the path's "path-lead"`) ||
		!strings.Contains(toJSON(t, out["details"]), `"field":"lead_id"`) {
		t.Fatalf("a body's other lead id: %d %v", code, out)
	}
	if n := len(fake.served()); n != calls {
		t.Fatalf("a contradicting body reached the service: %d calls, want %d", n, calls)
	}
	for _, body := range []string{`{"leadId":"path-lead","activityId":"a1"}`, `{"activityId":"a1"}`} {
		if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads/path-lead/activities", body); code != 200 || out["leadId"] != "path-lead" {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/nothing", `{}`); code != 404 || out["code"] != float64(codes.NotFound) {
		t.Fatalf("unknown path: %d %v", code, out)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("HTTP still answers after Serve returned")
	}
}

// A body sent to a path nothing answers is a 404 on a connection that
// goes on: unread, it once made the server panic on the next request,
// and a body of a megabyte once ended the connection under the client,
// whose next request then failed.
func TestHTTPUnknownPathWithABody(t *testing.T) {
	var log lockedBuffer
	_, _, web, _ := serveLogging(t, &log)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for i, size := range []int{10, 10, 1 << 20, 10, 10} {
		body := `{"a":"` + strings.Repeat("x", size) + `"}`
		res, err := client.Post("http://"+web.String()+"/v1/nothing", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("request %d, a %d-byte body: %v", i, size, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("a %d-byte body to an unknown path: %d", size, res.StatusCode)
		}
	}
	client.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond) // the server logs after the answer
	if strings.Contains(log.String(), "panic") {
		t.Fatalf("the server panicked: %s", log.String())
	}
}

// lockedBuffer is a log the server writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A client-streaming call over HTTP: newline-delimited JSON in, one JSON
// object per result out, rows read while results are written.
func TestHTTPStreamsNewlineDelimitedJSON(t *testing.T) {
	_, base, _ := serve(t)
	const rows = 3000 // more than Go's HTTP/1 server reads ahead on its own
	pr, pw := io.Pipe()
	go func() {
		enc := json.NewEncoder(pw)
		for i := range rows {
			if err := enc.Encode(map[string]any{"row": i + 1, "lead": map[string]any{"contact": map[string]any{"email": strings.Repeat("x", 200) + "@example.com"}}}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.Close()
	}()
	res, err := http.Post(base+"/v1/leads:import", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var line struct {
			Result *struct {
				Row string `json:"row"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Result == nil {
			t.Fatalf("line %d: %s (%v)", n+1, sc.Text(), err)
		}
		n++
		if want := strings.TrimSpace(toJSON(t, n)); line.Result.Row != want {
			t.Fatalf("result %d is row %s", n, line.Result.Row)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Fatalf("%d results, want %d", n, rows)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A streamed body whose value does not decode ends the call with
// INVALID_ARGUMENT naming that value, after the results of the values
// before it; nothing after it is sent. A first value that does not decode
// is a plain 400.
func TestHTTPStreamEndsAtAValueThatDoesNotDecode(t *testing.T) {
	fake, base, _ := serve(t)
	row := func(i int, field string) string {
		return fmt.Sprintf(`{"row":%d,"lead":{"contact":{%q:"r%d@example.com"}}}`+"\n", i, field, i)
	}
	var body strings.Builder
	for i := 1; i <= 8; i++ {
		field := "email"
		if i == 5 {
			field = "emial"
		}
		body.WriteString(row(i, field))
	}
	code, lines := testenv.HTTPLines(t, "POST", base+"/v1/leads:import", body.String())
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 4 results and an error: %v", len(lines), lines)
	}
	for i, line := range lines[:4] {
		if got := testenv.JSONField(line["result"], "row"); got != fmt.Sprint(i+1) {
			t.Fatalf("line %d: %v", i+1, line)
		}
	}
	e := lines[4]["error"]
	if msg, _ := testenv.JSONField(e, "message").(string); testenv.JSONField(e, "code") != float64(3) ||
		!strings.Contains(msg, "value 5") || !strings.Contains(msg, "lead.contact.emial: unknown field; Contact has email, firstName") ||
		!strings.Contains(toJSON(t, e), `"field":"lead.contact.emial"`) {
		t.Fatalf("error line: %v", lines[4])
	}
	if got := len(fake.served()); got != 1 {
		t.Fatalf("%d calls served, want the one import", got)
	}
	if n := fake.rows.Load(); n != 4 {
		t.Fatalf("the server got %d rows, want the 4 before the bad one", n)
	}

	// A client that keeps its body open after the bad row (it waits for
	// the answer to end before it closes) still gets the whole answer.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, row(1, "email")+row(2, "emial")) }()
	res, err := http.Post(base+"/v1/leads:import", "application/x-ndjson", pr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(res.Body); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the answer did not end while the client kept its body open")
	}
	res.Body.Close()

	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads:import", "not json\n"+row(2, "email"))
	if msg, _ := testenv.JSONField(out, "error", "message").(string); code != http.StatusBadRequest ||
		testenv.JSONField(out, "error", "code") != float64(3) || !strings.Contains(msg, "value 1") {
		t.Fatalf("a first value that does not decode: %d %v", code, out)
	}
}

// A streamed value that decodes but is over gRPC's message limit is the
// caller's to fix, as a unary one is: INVALID_ARGUMENT naming the body,
// HTTP 400 when it is the first, not a 429 that invites a retry.
func TestHTTPStreamValueOverTheMessageLimitIsInvalid(t *testing.T) {
	_, base, _ := serve(t)
	small := `{"row":1,"lead":{"contact":{"email":"r1@example.com"}}}` + "\n"
	big := `{"row":2,"lead":{"contact":{"email":"r2@example.com","notes":"` + strings.Repeat("n", 5<<20) + `"}}}` + "\n"
	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads:import", big)
	if code != http.StatusBadRequest || testenv.JSONField(out, "error", "code") != float64(codes.InvalidArgument) ||
		!strings.Contains(toJSON(t, out), `"field":"body"`) {
		t.Fatalf("a first value over the limit: %d %v", code, out["error"])
	}
	code, lines := testenv.HTTPLines(t, "POST", base+"/v1/leads:import", small+big)
	if code != http.StatusOK || len(lines) != 2 || testenv.JSONField(lines[0]["result"], "row") != "1" {
		t.Fatalf("a second value over the limit: %d %v", code, lines)
	}
	if e := lines[1]["error"]; testenv.JSONField(e, "code") != float64(codes.InvalidArgument) || !strings.Contains(toJSON(t, e), `"field":"body"`) {
		t.Fatalf("the error line after a value over the limit: %v", e)
	}
}

// WithTLS: gRPC and HTTP/JSON answer over TLS only, and HTTP calls still
// reach the gRPC server through the gateway's own connection, whose
// address (loopback) the certificate need not name.
func TestTLS(t *testing.T) {
	certs := testenv.NewTLS(t)
	fake, grpcAddr, web, _ := serveOn(t, grpcserver.WithTLS(certs.Server(t)))

	conn, err := grpc.NewClient(grpcAddr.String(), certs.Dial())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := intakev1.NewIntakeServiceClient(conn).GetLead(ctx, &intakev1.GetLeadRequest{LeadId: "known"}); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	plain, err := grpc.NewClient(grpcAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := intakev1.NewIntakeServiceClient(plain).GetLead(ctx, &intakev1.GetLeadRequest{LeadId: "known"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext gRPC: want UNAVAILABLE, got %v", err)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.Client(), ForceAttemptHTTP2: true}}
	res, err := client.Get("https://localhost:" + fmt.Sprint(web.(*net.TCPAddr).Port) + "/v1/leads/known")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"leadId":"known"`) || res.ProtoMajor != 2 {
		t.Fatalf("over HTTPS: %s %d %s", res.Proto, res.StatusCode, body)
	}
	if n := len(fake.served()); n != 2 {
		t.Fatalf("%d calls served, want 2 (gRPC and HTTPS)", n)
	}
	if res, err := http.Get("http://" + web.String() + "/healthz"); err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("plaintext HTTP answered")
	}
}

// A renewed certificate (the files replaced, as cert-manager or a
// Kubernetes Secret does) is served to new connections without a restart,
// gRPC and HTTP alike; a pair that does not load leaves the last good one
// in service.
func TestTLSCertificateRenewed(t *testing.T) {
	certs := testenv.NewTLS(t)
	renewed, err := devcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := certs.Client().RootCAs
	caPEM, err := os.ReadFile(renewed.CA)
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("second CA: %v", err)
	}
	client := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	_, grpcAddr, web, _ := serveOn(t, grpcserver.WithTLS(certs.Server(t)))

	// The leaf each kind of call meets on a fresh connection.
	servedGRPC := func() []byte {
		t.Helper()
		conn, err := grpc.NewClient(grpcAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(client)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var p peer.Peer
		if _, err := intakev1.NewIntakeServiceClient(conn).GetLead(ctx, &intakev1.GetLeadRequest{LeadId: "known"}, grpc.Peer(&p)); err != nil {
			t.Fatalf("gRPC over TLS: %v", err)
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].Raw
	}
	servedHTTP := func() []byte {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client, ForceAttemptHTTP2: true}}
		defer hc.CloseIdleConnections()
		res, err := hc.Get("https://localhost:" + fmt.Sprint(web.(*net.TCPAddr).Port) + "/v1/leads/known")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if body, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"leadId":"known"`) {
			t.Fatalf("HTTPS: %d %s", res.StatusCode, body)
		}
		return res.TLS.PeerCertificates[0].Raw
	}
	leaf := func(file string) []byte {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		return block.Bytes
	}
	first := leaf(certs.CertFile)
	if !bytes.Equal(servedGRPC(), first) || !bytes.Equal(servedHTTP(), first) {
		t.Fatal("not the first certificate before the renewal")
	}
	// Replaced as a mounted Secret is: each file swapped whole.
	replace := func(dst, src string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmp := dst + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			t.Fatal(err)
		}
	}
	replace(certs.CertFile, renewed.Cert)
	// Half renewed (the new certificate, the old key): the old pair serves.
	if !bytes.Equal(servedGRPC(), first) {
		t.Fatal("a certificate without its key was served")
	}
	replace(certs.KeyFile, renewed.Key)
	second := leaf(renewed.Cert)
	if !bytes.Equal(servedGRPC(), second) || !bytes.Equal(servedHTTP(), second) {
		t.Fatal("the renewed certificate is not served to new connections")
	}
}

// A body the call stops reading at a value that does not decode, with
// more after it, leaves the connection usable or closes it saying so:
// the server does not panic, and the client's next request is answered.
func TestHTTPBodyLeftUnreadAfterABadValue(t *testing.T) {
	var log lockedBuffer
	_, _, web, _ := serveLogging(t, &log)
	base := "http://" + web.String()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	post := func(path, body string) int {
		t.Helper()
		res, err := client.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	var rows strings.Builder
	rows.WriteString(`{"row":1,"lead":{"contact":{"email":"a@example.com"}}}` + "\n")
	rows.WriteString(`{"row":2,"lead":{"contact":{"emial":"b@example.com"}}}` + "\n")
	for i := 3; i < 300; i++ {
		fmt.Fprintf(&rows, `{"row":%d,"lead":{"contact":{"email":"c%d@example.com"}}}`+"\n", i, i)
	}
	var failing strings.Builder
	failing.WriteString(`{"row":1,"lead":{"contact":{"email":"fail@example.com"}}}` + "\n")
	for i := 2; i < 300; i++ {
		fmt.Fprintf(&failing, `{"row":%d,"lead":{"contact":{"email":"c%d@example.com"}}}`+"\n", i, i)
	}
	bodies := []struct{ path, body string }{
		{"/v1/leads:import", rows.String()},
		{"/v1/leads:import", failing.String()}, // the server ends the stream
		{"/v1/leads", `{"contact":{"emial":"t@example.com"}}` + strings.Repeat(" ", 30000)},
	}
	for _, b := range bodies {
		post(b.path, b.body)
		if code := post("/v1/leads", `{"idempotencyKey":"k","contact":{"email":"next@example.com"}}`); code != http.StatusOK {
			t.Fatalf("the request after a bad body to %s: %d", b.path, code)
		}
	}
	client.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond) // the server logs after the answer
	if strings.Contains(log.String(), "panic") {
		t.Fatalf("the server panicked: %s", log.String())
	}
}

// A unary call's body is one JSON value: more after it (a second request,
// or anything but white space) is refused, not dropped unanswered.
func TestHTTPUnaryBodyIsOneValue(t *testing.T) {
	fake, base, _ := serve(t)
	for _, body := range []string{
		`{"contact":{"email":"z1@example.com"}} {"contact":{"email":"z2@example.com"}}`,
		`{"contact":{"email":"z3@example.com"}} garbage`,
	} {
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body)
		if msg, _ := testenv.JSONField(out, "message").(string); code != http.StatusBadRequest || !strings.Contains(msg, "more follows") {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	if n := len(fake.served()); n != 0 {
		t.Fatalf("%d calls served, want none", n)
	}
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", `{"contact":{"email":"z4@example.com"}}`+"\n\t "); code != http.StatusOK {
		t.Fatalf("one value and white space: %d %v", code, out)
	}
}

// Every service's OpenAPI document says its calls take a bearer token, so
// a client generated from it sends one (else every call is a 401).
func TestOpenAPIDocumentsDeclareTheBearerToken(t *testing.T) {
	docs, err := filepath.Glob("../gen/leadflow/*/v1/*_service.swagger.json")
	if err != nil || len(docs) < 5 {
		t.Fatalf("OpenAPI documents: %v %v", docs, err)
	}
	for _, path := range docs {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			SecurityDefinitions map[string]struct{ Type, Name, In string }
			Security            []map[string][]string
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		s := doc.SecurityDefinitions["bearer"]
		if s.Type != "apiKey" || s.Name != "Authorization" || s.In != "header" || len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
			t.Errorf("%s: security definitions %+v, security %v; want the bearer token in Authorization, required", path, doc.SecurityDefinitions, doc.Security)
		}
	}
}
