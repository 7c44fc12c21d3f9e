package grpcserver_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/config"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A server that has just started refuses a token revoked before it
// started, from its first answer; one that cannot reach the revocations
// refuses every token (UNAVAILABLE) for as long as that lasts, and says
// NOT_SERVING to health checks meanwhile.
func TestANewServerRefusesATokenRevokedBeforeItStarted(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := auth.EnsureRevocations(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	pub, signer, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() string {
		tok, err := auth.Issue(signer, auth.Principal{Subject: "crm-sync", Scopes: []string{auth.AllScopes}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoked, valid := issue(), issue()
	p, _ := auth.Claimed(revoked)
	if err := auth.Revoke(ctx, n.JS, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	// start starts a server following js and returns a call with a token
	// and a health check, and the base URL of its HTTP side.
	start := func(t *testing.T, js jetstream.JetStream) (func(tok string) error, func() healthpb.HealthCheckResponse_ServingStatus, string) {
		sctx, stop := context.WithCancel(ctx)
		s, err := grpcserver.ForService(sctx, slog.New(slog.NewTextHandler(io.Discard, nil)), js, hex.EncodeToString(pub), config.TLS{})
		if err != nil {
			t.Fatal(err)
		}
		intakev1.RegisterIntakeServiceServer(s.Server, intakev1.UnimplementedIntakeServiceServer{})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		web, err := s.ListenHTTP("127.0.0.1:0", intakev1.RegisterIntakeServiceHandler)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx, lis, time.Second) }()
		t.Cleanup(func() { stop(); <-done })
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := intakev1.NewIntakeServiceClient(conn)
		return func(tok string) error {
				_, err := c.GetLead(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok),
					&intakev1.GetLeadRequest{LeadId: "0192a1b2-0000-7000-8000-000000000001"}, grpc.WaitForReady(true))
				return err
			}, func() healthpb.HealthCheckResponse_ServingStatus {
				r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
				if err != nil {
					t.Fatal(err)
				}
				return r.GetStatus()
			}, "http://" + web.String()
	}
	// get calls GetLead over HTTP and returns the HTTP status, the gRPC
	// code in the body and the answer's header.
	get := func(t *testing.T, base string, header ...string) (int, codes.Code, http.Header) {
		code, h, body := testenv.HTTPWithHeader(t, "GET", base+"/v1/leads/0192a1b2-0000-7000-8000-000000000001", "", header...)
		var st struct{ Code codes.Code }
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%d %q: %v", code, body, err)
		}
		return code, st.Code, h
	}

	t.Run("Revoked", func(t *testing.T) {
		call, health, base := start(t, n.JS)
		if got := health(); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health with the revocations read: %v, want SERVING", got)
		}
		// Over HTTP a token refused is 401 naming the scheme (RFC 9110).
		for _, h := range [][]string{nil, {"Authorization", "Bearer " + revoked}} {
			if code, c, header := get(t, base, h...); code != http.StatusUnauthorized || c != codes.Unauthenticated ||
				header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("HTTP with %v: %d %v WWW-Authenticate %q, want 401 UNAUTHENTICATED Bearer", h, code, c, header.Get("WWW-Authenticate"))
			}
		}
		if err := call(revoked); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a revoked token: %v, want UNAUTHENTICATED", err)
		}
		if err := call(valid); status.Code(err) != codes.Unimplemented { // past auth
			t.Fatalf("a token not revoked: %v, want it taken", err)
		}
	})
	t.Run("BucketOutOfReach", func(t *testing.T) {
		away, err := jetstream.NewWithDomain(n.Conn, "away") // no JetStream answers there
		if err != nil {
			t.Fatal(err)
		}
		call, health, base := start(t, away)
		if got := health(); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health with the revocations out of reach: %v, want NOT_SERVING", got)
		}
		for _, tok := range []string{revoked, valid} {
			if err := call(tok); status.Code(err) != codes.Unavailable {
				t.Fatalf("revocations out of reach: %v, want UNAVAILABLE", err)
			}
			// Over HTTP too: 503 to retry, not a 401 that would have a
			// client throw a good token away.
			if code, c, header := get(t, base, "Authorization", "Bearer "+tok); code != http.StatusServiceUnavailable || c != codes.Unavailable ||
				header.Get("Retry-After") == "" {
				t.Fatalf("HTTP, revocations out of reach: %d %v Retry-After %q, want 503 UNAVAILABLE", code, c, header.Get("Retry-After"))
			}
		}
	})
}
