package auth

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/auth/v1"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// open are the services anyone may call: load balancers probe health, and
// reflection describes the API, which is public.
var open = []string{"/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"}

// Scope is the scope a method (its full gRPC name, /pkg.Service/Method)
// declares, or "" when it declares none or is unknown.
func Scope(fullMethod string) string {
	if s, ok := scopes.Load(fullMethod); ok {
		return s.(string)
	}
	var scope string
	name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", "."))
	if d, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err == nil {
		if md, ok := d.(protoreflect.MethodDescriptor); ok && md.Options() != nil {
			scope, _ = proto.GetExtension(md.Options(), authv1.E_Scope).(string)
		}
	}
	scopes.Store(fullMethod, scope)
	return scope
}

var scopes sync.Map // full method -> scope

// authorize finds the caller of ctx and checks it may call method:
// UNAUTHENTICATED without a valid token, UNAVAILABLE before the
// revocations are read (RequireRevocations), PERMISSION_DENIED naming the
// scope the method needs when the token does not grant it.
func (v *Verifier) authorize(ctx context.Context, method string) (context.Context, error) {
	for _, prefix := range open {
		if strings.HasPrefix(method, prefix) {
			return ctx, nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	if h := md.Get("authorization"); len(h) > 0 {
		token = BearerToken(h[0])
	}
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "authorization: a bearer token is required")
	}
	p, err := v.Verify(token)
	if errors.Is(err, ErrNotReady) {
		return nil, status.Error(codes.Unavailable, "authorization: this server has not read the token revocations yet; try again shortly")
	}
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	scope := Scope(method)
	if scope == "" {
		return nil, status.Errorf(codes.PermissionDenied, "%s declares no scope, so nobody may call it", method)
	}
	if !p.Grants(scope) {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs scope %q, which the token of %q does not grant", method, scope, p.Subject)
	}
	return WithPrincipal(ctx, p), nil
}

// UnaryInterceptor checks every unary call.
func (v *Verifier) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := v.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamInterceptor checks every streaming call, and its token again as
// the caller's messages arrive: an import held open must take no row
// once its token expired or was revoked. Answers still go out: rows
// already written must not lose theirs.
func (v *Verifier) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := v.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		ps := &principalStream{ServerStream: ss, ctx: ctx}
		if p, ok := FromContext(ctx); ok { // not an open method
			ps.v, ps.principal = v, p
			ps.checked.Store(v.now().UnixNano())
		}
		return h(srv, ps)
	}
}

// recheckEvery bounds how often a stream's token is checked again; a check
// of a remembered token is a map lookup.
const recheckEvery = time.Second

type principalStream struct {
	grpc.ServerStream
	ctx       context.Context
	v         *Verifier // nil: an open method
	principal Principal
	checked   atomic.Int64 // unix nanoseconds of the last check
}

func (s *principalStream) Context() context.Context { return s.ctx }

// RecvMsg refuses a message that arrives after the token expired or was
// revoked.
func (s *principalStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.recheck()
}

func (s *principalStream) recheck() error {
	if s.v == nil {
		return nil
	}
	now := s.v.now()
	if now.UnixNano()-s.checked.Load() < int64(recheckEvery) {
		return nil
	}
	s.checked.Store(now.UnixNano())
	if err := s.v.StillValid(s.principal); err != nil {
		return status.Errorf(codes.Unauthenticated, "authorization: during the stream: %v", err)
	}
	return nil
}

// KnownScopes are the scopes the methods of every Leadflow API linked into
// this binary declare, sorted.
func KnownScopes() []string {
	seen := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				if s := Scope("/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())); s != "" {
					seen[s] = true
				}
			}
		}
		return true
	})
	return slices.Sorted(maps.Keys(seen))
}

// ActingAs is the person a request acts for when it names one by id
// (field), such as the rep accepting a lead, whose id decides what the
// request may do. With auth off, or for an integration or a service (a
// CRM acting for its reps), it is the id named. Any other caller (a
// person, or a token of no kind) acts as themselves: naming nobody is the
// caller, and naming someone else is PERMISSION_DENIED, so no rep works
// another rep's leads.
func ActingAs(ctx context.Context, id, field string) (string, error) {
	p, ok := FromContext(ctx)
	switch {
	case !ok || p.Kind == eventv1.ActorKind_ACTOR_KIND_INTEGRATION || p.Kind == eventv1.ActorKind_ACTOR_KIND_SERVICE:
		return id, nil
	case id == "":
		return p.Subject, nil
	case id != p.Subject:
		return "", status.Errorf(codes.PermissionDenied, "%s is %q, but the caller is %q: a person acts as themselves (an integration's token may act for others)",
			field, id, p.Subject)
	}
	return id, nil
}

// Acting is who a request acts as when it names an actor (field) whose
// word matters, such as the team that signs a scoring model off. With auth
// off it is the actor the request names. With auth on it is the caller: a
// request naming nobody (or only the caller's id or team) acts as the
// caller, and one naming someone else is PERMISSION_DENIED, so nobody signs
// for another person or team.
func Acting(ctx context.Context, claimed *eventv1.Actor, field string) (*eventv1.Actor, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return claimed, nil
	}
	// What the request leaves out (the id, the team) is the caller's.
	id, team := claimed.GetId(), claimed.GetTeam()
	if id != "" && id != p.Subject || team != eventv1.Team_TEAM_UNSPECIFIED && team != p.Team {
		return nil, status.Errorf(codes.PermissionDenied, "%s is %q of %s, but the caller is %q of %s: a request acts as its caller",
			field, claimed.GetId(), claimed.GetTeam(), p.Subject, p.Team)
	}
	return p.Actor(), nil
}
