// Package grpcserver builds and runs a Leadflow gRPC server the same way
// for every service: tracing, health, reflection, panic recovery, bad
// requests answered with INVALID_ARGUMENT, HTTP/JSON through the same
// server (grpc-gateway), TLS for both when configured, and a graceful stop.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
	log    *slog.Logger
	// web, if set, is where Serve answers HTTP/JSON (see ListenHTTP).
	web      net.Listener
	gateways []Gateway
	// tls, if set, is what gRPC and HTTP/JSON answer with.
	tls *tls.Config
	// verifier checks the callers' tokens; nil: auth off.
	verifier *auth.Verifier
	// revocations, if set, is closed once the verifier has read the
	// revocations; until then health says NOT_SERVING, as every call is
	// refused.
	revocations <-chan struct{}
	// rec holds the decode errors of requests in flight.
	rec *recorder
}

// ForService builds a service's server from its settings: the tokens of
// the signers authKeys lists (auth off when empty), with revocations
// followed on js until ctx ends, and TLS from the files tlsFiles names.
// With auth on it waits up to revocationsWait for the revocations to be
// read; until they are, every token is refused (UNAVAILABLE).
func ForService(ctx context.Context, log *slog.Logger, js jetstream.JetStream, authKeys string, tlsFiles config.TLS) (*Server, error) {
	verifier, err := auth.FromKeys(authKeys)
	if err != nil {
		return nil, fmt.Errorf("-auth-keys: %w", err)
	}
	certs, err := tlsFiles.Server()
	if err != nil {
		return nil, err
	}
	if verifier != nil {
		// Fail closed: a replica that has not read the revocations would
		// take a revoked token.
		verifier.RequireRevocations()
		go verifier.Follow(ctx, js, log) // revoked tokens (leadctl token revoke)
		select {
		case <-verifier.Ready():
		case <-ctx.Done():
		case <-time.After(revocationsWait):
			log.Warn("auth: token revocations not read yet; every call is refused until they are")
		}
	}
	s := New(log, verifier, WithTLS(certs))
	if verifier != nil {
		s.revocations = verifier.Ready()
	}
	return s, nil
}

// revocationsWait is how long ForService waits for the revocations: they
// take a round trip or two, so a healthy start never refuses a call for
// them, and one that cannot read them starts and refuses instead.
const revocationsWait = 5 * time.Second

// Verifier is what checks the callers' tokens; nil when auth is off.
func (s *Server) Verifier() *auth.Verifier { return s.verifier }

// TLSConfig is what the server answers with; nil when it is plaintext.
func (s *Server) TLSConfig() *tls.Config { return s.tls }

// Option configures New.
type Option func(*Server)

// WithTLS makes the server answer gRPC and HTTP/JSON over TLS with cfg's
// certificate; nil keeps them plaintext.
func WithTLS(cfg *tls.Config) Option { return func(s *Server) { s.tls = cfg } }

// streamWorkers is how many calls run on reused goroutines: most calls
// wait on JetStream round trips, so many are in flight per core.
const streamWorkers = 256

// New returns a server with tracing, health and reflection registered.
// Register the service's own API on it, then call Serve. With a verifier,
// every call but health and reflection needs a token granting the scope
// its method declares (pkg/auth), checked before the request is looked
// at; without one, anyone may call anything, which New logs.
func New(log *slog.Logger, v *auth.Verifier, opts ...Option) *Server {
	s := &Server{Health: health.NewServer(), log: log, verifier: v}
	for _, o := range opts {
		o(s)
	}
	rec := &recorder{}
	s.rec = rec
	// forget comes before auth: a request auth refuses never reaches
	// rec.unary, and its decode error would stay recorded for ever.
	unary := []grpc.UnaryServerInterceptor{recoverUnary(log), rec.forget, rec.unary, correlationUnary}
	stream := []grpc.StreamServerInterceptor{recoverStream(log), rec.stream, correlationStream}
	if v != nil {
		unary = slices.Insert(unary, 2, v.UnaryInterceptor())
		stream = slices.Insert(stream, 1, v.StreamInterceptor())
	} else {
		log.Warn("auth off: no -auth-keys, so every caller may call every method")
	}
	gopts := []grpc.ServerOption{
		telemetry.ServerOption(),
		grpc.ForceServerCodecV2(codec{rec: rec}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Calls run on long-lived goroutines whose stacks have already
		// grown, instead of a new goroutine each that grows its stack
		// while encoding an event (a sixth of a capture's CPU, profiled).
		// Calls beyond the workers still get a goroutine of their own.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if s.tls != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	s.Server = grpc.NewServer(gopts...)
	healthpb.RegisterHealthServer(s.Server, s.Health)
	reflection.Register(s.Server)
	return s
}

// Serve serves on lis (and HTTP/JSON, after ListenHTTP) until ctx is
// done, then reports NOT_SERVING, lets running calls finish for up to
// grace, and stops. HTTP stops first: its calls go through the gRPC
// server, which keeps serving them until then.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	// NOT_SERVING while every call would be refused (the revocations not
	// read yet), so a load balancer sends callers to another replica.
	ready := make(chan struct{}) // closed once that wait is over
	quit := make(chan struct{})
	stopWaiting := sync.OnceFunc(func() { close(quit) })
	defer stopWaiting()
	if s.revocations == nil {
		s.Health.Resume()
		close(ready)
	} else {
		s.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		go func() {
			defer close(ready)
			select {
			case <-s.revocations:
				s.Health.Resume()
			case <-quit:
			}
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(lis) }()
	var web *webServer
	var webDone <-chan struct{} // nil without HTTP: never ready
	if s.web != nil {
		var err error
		if web, err = s.startHTTP(ctx, lis.Addr()); err != nil {
			s.web.Close()
			s.Server.Stop()
			<-errc
			return err
		}
		webDone = web.done
	}
	select {
	case err := <-errc:
		if web != nil {
			_ = web.stop(time.Now(), s.log)
		}
		return err
	case <-webDone: // the HTTP server failed: stop the rest too
	case <-ctx.Done():
	}
	stopWaiting()
	<-ready // no Resume after this Shutdown
	s.Health.Shutdown()
	deadline := time.Now().Add(grace)
	var webErr error
	if web != nil {
		webErr = web.stop(deadline, s.log)
	}
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Until(deadline)):
		s.log.Warn("grace period over, closing open calls", "grace", grace)
		s.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return errors.Join(err, webErr)
	}
	return webErr
}

// FieldViolation names one refused request field.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgument is an INVALID_ARGUMENT status whose details list every
// refused field (google.rpc.BadRequest), so clients can point at them.
func InvalidArgument(msg string, fields ...FieldViolation) error {
	st := status.New(codes.InvalidArgument, msg)
	br := &errdetails.BadRequest{}
	for _, f := range fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Description})
	}
	if d, err := st.WithDetails(br); err == nil {
		st = d
	}
	return st.Err()
}

// Violations returns the field violations of an INVALID_ARGUMENT error.
func Violations(err error) []FieldViolation {
	var out []FieldViolation
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				out = append(out, FieldViolation{Field: f.GetField(), Description: f.GetDescription()})
			}
		}
	}
	return out
}

// The default codec fails a request that does not decode (invalid UTF-8
// in a string, broken wire data) before any handler runs, and gRPC then
// answers INTERNAL: a server fault, for what is the client's. This codec
// decodes to an empty message instead and remembers why; the
// interceptors answer INVALID_ARGUMENT naming the field before the
// handler sees the empty message.
type codec struct{ rec *recorder }

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("grpcserver: %T is not a proto message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		proto.Reset(m)
		if field := invalidUTF8(m.ProtoReflect().Descriptor(), buf.ReadOnlyData(), ""); field != "" {
			err = InvalidArgument("request is not valid", FieldViolation{Field: field, Description: "must be valid UTF-8"})
		} else {
			err = InvalidArgument("request does not decode: " + err.Error())
		}
		c.rec.bad.Store(m, err)
	}
	return nil
}

// invalidUTF8 walks wire data against its descriptor and returns the path
// of the first string field that is not UTF-8 ("contact.email",
// "consents[1].source"), or "" when there is none.
func invalidUTF8(md protoreflect.MessageDescriptor, b []byte, prefix string) string {
	counts := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		path := prefix + string(fd.Name())
		if fd.IsList() {
			path = fmt.Sprintf("%s[%d]", path, counts[num])
			counts[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return path
			}
		case protoreflect.MessageKind:
			if fd.IsMap() {
				continue
			}
			if p := invalidUTF8(fd.Message(), v, path+"."); p != "" {
				return p
			}
		}
	}
	return ""
}

type recorder struct{ bad sync.Map } // proto.Message -> decode error

func (r *recorder) check(m any) error {
	v, ok := r.bad.LoadAndDelete(m)
	if !ok {
		return nil
	}
	return v.(error)
}

// forget drops what the codec recorded of req once the call is over,
// whoever answered it.
func (r *recorder) forget(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	defer r.bad.Delete(req)
	return h(ctx, req)
}

func (r *recorder) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := r.check(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (r *recorder) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &checkedStream{ServerStream: ss, rec: r})
}

type checkedStream struct {
	grpc.ServerStream
	rec *recorder
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.rec.check(m)
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ctx, "panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ss.Context(), "panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(srv, ss)
	}
}

// UnkeyedUnknown is the status of a write whose outcome is unknown
// (eventstore.ErrUnknownOutcome) and whose request has no key (field):
// unlike Status's, it does not tell the caller that sending it again is
// safe; twice says what a second one would do. Nil for any other error.
func UnkeyedUnknown(err error, field, twice string) error {
	if !errors.Is(err, eventstore.ErrUnknownOutcome) {
		return nil
	}
	return status.Errorf(codes.Unavailable, "the write's outcome is unknown, and the request has no %s: sent again, %s", field, twice)
}

// Status maps the errors every service shares to a gRPC status, and is the
// one place an unexplained error is logged: a refused lifecycle transition
// is FAILED_PRECONDITION, a write whose outcome is unknown or JetStream
// not taking requests UNAVAILABLE (to send again), a lost optimistic-concurrency race that outlived its
// retries ABORTED, a cancelled or expired context CANCELED or
// DEADLINE_EXCEEDED, anything else INTERNAL without details. Services map
// their own errors (validation, not found) first and hand the rest here.
func Status(ctx context.Context, log *slog.Logger, method string, err error) error {
	switch {
	case errors.Is(err, lifecycle.ErrRefused):
		return status.Error(codes.FailedPrecondition, asCalled(err, method))
	case errors.Is(err, lifecycle.ErrInvalidCommand):
		// A field the caller gave that the lifecycle refuses whatever the
		// state (a close date that is past by the time it is decided).
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, eventstore.ErrUnknownOutcome):
		// Nothing is known to be lost: the same request again (same key
		// or request id) finds out, and stores it at most once.
		return status.Error(codes.Unavailable, "the write's outcome is unknown; send the same request again")
	case eventstore.Unavailable(err):
		// A server starting, a stream between leaders: it took nothing of
		// the step that failed, and takes it again in a moment.
		return status.Error(codes.Unavailable, "JetStream is unavailable for now; send the same request again")
	case errors.Is(err, eventstore.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	log.ErrorContext(ctx, "request failed", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// asCalled is a lifecycle refusal's text naming the method the caller
// sent (CloseLost), not the state machine's command for it (Lose).
func asCalled(err error, method string) string {
	var r *lifecycle.RefusedError
	if method == "" || !errors.As(err, &r) {
		return err.Error()
	}
	named := *r
	named.Command = lifecycle.CommandName(method)
	return strings.Replace(err.Error(), r.Error(), named.Error(), 1)
}

// CorrelationHeader is the request metadata key that carries a caller's
// correlation id into every event the request writes.
const CorrelationHeader = "x-correlation-id"

// maxCorrelationID is the longest correlation id a caller may send; every
// event a request writes carries it.
const maxCorrelationID = 128

// checkCorrelation refuses a correlation id too long to store, rather
// than write the request's events under another one the caller never
// learns.
func checkCorrelation(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(CorrelationHeader); len(v) > 0 {
		return correlationError(v[0])
	}
	return nil
}

// correlationError refuses a correlation id too long to store, or with a
// byte gRPC metadata cannot carry (the HTTP gateway drops such a header,
// and the call would run under an id the caller never learns).
func correlationError(v string) error {
	var why string
	switch {
	case len(v) > maxCorrelationID:
		why = fmt.Sprintf("%d characters, at most %d", len(v), maxCorrelationID)
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		why = "printable ASCII only"
	case envelope.HoldsEmail(v):
		why = "must not hold an email address: every event the call writes keeps it in the clear, also after the lead's erasure"
	default:
		return nil
	}
	return InvalidArgument(CorrelationHeader+": "+why, FieldViolation{Field: CorrelationHeader, Description: why})
}

func correlationUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := checkCorrelation(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func correlationStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := checkCorrelation(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// Meta is the envelope for the events one request writes: the caller's
// correlation id (or a new one), which is also the cause of the request's
// first events, and the trace context of the request's span.
func Meta(ctx context.Context) envelope.Meta {
	m := envelope.Meta{Trace: telemetry.Inject(ctx)}
	if p, ok := auth.FromContext(ctx); ok {
		// Services that know better (a rep) set their own actor; the
		// caller stays on record beside it.
		m.Actor = p.Actor()
		m.Caller = m.Actor
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(CorrelationHeader); len(v) > 0 && len(v[0]) <= maxCorrelationID {
			m.CorrelationID = v[0]
		}
	}
	if m.CorrelationID == "" {
		m.CorrelationID = uuid.NewString()
	}
	m.CausationID = m.CorrelationID
	return m
}
