package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
)

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
func (f fakeStream) RecvMsg(any) error        { return nil }
func (f fakeStream) SendMsg(any) error        { return nil }

// An import held open stops taking rows once its token expires (past the
// leeway) or is revoked: the token is checked again as messages pass, not
// only when the stream opens.
func TestStreamStopsWhenItsTokenLapses(t *testing.T) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		lapse func(v *Verifier, p Principal, clock *time.Time)
		want  string
	}{
		{"expired", func(_ *Verifier, _ Principal, clock *time.Time) { *clock = clock.Add(2 * time.Minute) }, "expired"},
		{"revoked", func(v *Verifier, p Principal, clock *time.Time) {
			v.revokedIDs[p.ID] = struct{}{}
			*clock = clock.Add(2 * time.Second)
		}, "revoked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewVerifier(k.Public().(ed25519.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			clock := time.Now()
			v.now = func() time.Time { return clock }
			tok, err := Issue(k, Principal{Subject: "importer", Scopes: []string{"leads:capture"}}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
			rows := 0
			h := func(_ any, ss grpc.ServerStream) error {
				for i := range 3 {
					if err := ss.RecvMsg(nil); err != nil {
						return err
					}
					rows++
					if i == 0 {
						p, _ := FromContext(ss.Context())
						c.lapse(v, p, &clock)
					}
				}
				return nil
			}
			err = v.StreamInterceptor()(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/leadflow.intake.v1.IntakeService/ImportLeads"}, h)
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), c.want) || rows != 1 {
				t.Fatalf("after %d rows: %v; want Unauthenticated (%s) after the first", rows, err, c.want)
			}
		})
	}
}
