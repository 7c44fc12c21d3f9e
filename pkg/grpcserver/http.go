package grpcserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/leadflow/leadflow/pkg/auth"
)

// Gateway adds one service's HTTP/JSON routes to a mux, each calling the
// service through conn: the Register<Service>Handler functions that
// protoc-gen-grpc-gateway writes into pkg/gen.
type Gateway func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error

// httpHandler returns the HTTP/JSON API of the services the gateways add,
// plus GET /healthz (the gRPC health check). Every call goes through conn
// as a gRPC call, so the server's interceptors apply to it as to any
// other. The x-correlation-id header and W3C trace context are passed on
// as gRPC metadata, Authorization as "authorization" (the gateway's
// default). JSON uses the proto JSON names (lowerCamel) and accepts the
// proto names too; a field the request type does not have, in the body
// or as a query parameter of a route that reads them, is refused, named
// by its path in the request (e.g. attribution.campaign) as a field
// violation, and so is a body field that contradicts the path (a lead id
// in the body that is not the URL's).
// Errors keep their gRPC status: code, message and details (field
// violations) in the JSON body, mapped to an HTTP status (INVALID_ARGUMENT
// and FAILED_PRECONDITION 400, NOT_FOUND 404, ABORTED 409, ...). A
// client-streaming body that stops decoding ends the call with
// INVALID_ARGUMENT after the results of the values before it; conn must
// carry streamBodyErrors for that (dialSelf's does).
func httpHandler(ctx context.Context, conn *grpc.ClientConn, gateways ...Gateway) (http.Handler, error) {
	// The gateway's default drops unknown fields: a misspelt
	// idempotencyKey would then be a silent duplicate capture.
	unmarshal := protojson.UnmarshalOptions{DiscardUnknown: false}
	var mux *runtime.ServeMux
	mux = runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, decodeRecorder{&runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true}, UnmarshalOptions: unmarshal,
		}}, unmarshal}),
		runtime.WithErrorHandler(bodyErrors),
		runtime.WithRoutingErrorHandler(routingErrors),
		runtime.SetQueryParameterParser(&strictQuery{}),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
		runtime.WithMiddlewares(withPath, verbOfAnother(&mux)),
		// A form POST (curl -d without a content type) to a GET route is
		// a mistake to refuse (405), not a GET whose body is dropped.
		runtime.WithDisablePathLengthFallback(),
	)
	for _, g := range gateways {
		if err := g(ctx, mux, conn); err != nil {
			return nil, fmt.Errorf("register http gateway: %w", err)
		}
	}
	return fullDuplex(withBody(correlated(mux))), nil
}

// correlated refuses a correlation id the gRPC call could not carry
// before anything reads the body (checkCorrelation, over HTTP).
func correlated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, v := range r.Header.Values(CorrelationHeader) { // each: the gateway drops a bad one silently
			if err := correlationError(v); err != nil && r.URL.Path != "/healthz" {
				writeStatus(w, status.Convert(err))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// writeStatus answers st as the gateway answers an error: the HTTP status
// its code maps to, the status as JSON. An UNAUTHENTICATED answer names
// the scheme to authenticate with (RFC 9110).
func writeStatus(w http.ResponseWriter, st *status.Status) {
	writeStatusCode(w, runtime.HTTPStatusFromCode(st.Code()), st)
}

// writeStatusCode is writeStatus with the HTTP status code given.
func writeStatusCode(w http.ResponseWriter, code int, st *status.Status) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// verbOfAnother answers 405 for a GET whose path names a custom method
// another route serves (GET /v1/leads/<id>:merge): the GET route's
// pattern takes "<id>:merge" for its id, and would refuse it as a bad
// id. No id of ours holds a colon.
func verbOfAnother(mux **runtime.ServeMux) runtime.Middleware {
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			if r.Method == http.MethodGet && r.Context().Value(probeKey{}) == nil && colon(params) {
				if allow := slices.DeleteFunc(strings.Split(allowed(*mux, r), ", "), func(m string) bool { return m == http.MethodGet || m == "" }); len(allow) > 0 {
					w.Header().Set("Allow", strings.Join(allow, ", "))
					writeStatusCode(w, http.StatusMethodNotAllowed, status.New(codes.Unimplemented, r.Method+" "+r.URL.Path+": method not allowed"))
					return
				}
			}
			next(w, r, params)
		}
	}
}

// colon reports whether a path parameter holds a colon, without the
// allocation a collected slice would cost every GET.
func colon(params map[string]string) bool {
	for _, v := range params {
		if strings.Contains(v, ":") {
			return true
		}
	}
	return false
}

// probeKey marks a request routingErrors sends through the mux to learn
// whether a method is served at a path: withPath answers it, unserved.
type probeKey struct{}

// allowed is the methods the mux serves at r's path, for a 405's Allow.
func allowed(mux *runtime.ServeMux, r *http.Request) string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		served := false
		p := r.Clone(context.WithValue(r.Context(), probeKey{}, &served))
		p.Method, p.Body, p.ContentLength = m, http.NoBody, 0
		mux.ServeHTTP(discard{}, p)
		if served {
			out = append(out, m)
		}
	}
	return strings.Join(out, ", ")
}

// discard is a ResponseWriter a probe's answer goes nowhere through.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// routingErrors answers a path served for other methods 405, not the
// gateway's 501 (its status, UNIMPLEMENTED, stays in the body): the
// method is the caller's to fix, not one the server lacks.
func routingErrors(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	if r.Context().Value(probeKey{}) != nil {
		return // a probe of another method: not served
	}
	if code != http.StatusMethodNotAllowed {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
		return
	}
	body, err := m.Marshal(status.New(codes.Unimplemented, r.Method+" "+r.URL.Path+": method not allowed").Proto())
	if err != nil {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
		return
	}
	w.Header().Set("Allow", allowed(mux, r))
	w.Header().Set("Content-Type", m.ContentType(nil))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// authenticated refuses a request without a valid token (HTTP 401, the
// gRPC status as JSON, as the gateway writes errors) before anything
// reads its body; the method's scope is checked on the gRPC call. While
// the revocations are unread no token is taken, and the answer is the
// gRPC side's UNAVAILABLE (503), to retry, not a 401 that would have a
// client throw a good token away.
func authenticated(v *auth.Verifier, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		// Authorization alone: the only header the gateway passes on.
		var st *status.Status
		if token := auth.BearerToken(r.Header.Get("Authorization")); token == "" {
			st = status.New(codes.Unauthenticated, "authorization: a bearer token is required")
		} else if _, err := v.Verify(token); errors.Is(err, auth.ErrNotReady) {
			st = status.New(codes.Unavailable, err.Error())
			w.Header().Set("Retry-After", "5")
		} else if err != nil {
			st = status.New(codes.Unauthenticated, err.Error())
		}
		if st == nil {
			h.ServeHTTP(w, r)
			return
		}
		writeStatus(w, st)
	})
}

// headerMatcher passes on the headers the services read beyond the
// gateway's defaults: the correlation id and the caller's trace context.
func headerMatcher(key string) (string, bool) {
	for _, h := range []string{CorrelationHeader, "traceparent", "tracestate"} {
		if strings.EqualFold(key, h) {
			return h, true
		}
	}
	return runtime.DefaultHeaderMatcher(key)
}

// fullDuplex lets a streaming call (ImportLeads, newline-delimited JSON)
// keep reading rows while it writes results: without it Go's HTTP/1
// server discards the unread body once the response starts.
func fullDuplex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		h.ServeHTTP(w, r)
	})
}

// ListenHTTP makes Serve answer HTTP/JSON on addr too, for the services
// the gateways add (see httpHandler), through a client connection to the
// server's own gRPC listener. It returns the address bound, or nil when
// addr is empty: no HTTP. Call it before Serve.
func (s *Server) ListenHTTP(addr string, gateways ...Gateway) (net.Addr, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s.web, s.gateways = lis, gateways
	return lis.Addr(), nil
}

// dialSelf connects to the server's own listener; an unspecified listen
// address (":7101") is reached on loopback. Over TLS it trusts the
// server's own certificate, under a name the certificate holds, since
// loopback is rarely one of them.
func dialSelf(addr net.Addr, serverTLS *tls.Config) (*grpc.ClientConn, error) {
	target := addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		host := "127.0.0.1"
		if tcp.IP.To4() == nil {
			host = "::1"
		}
		target = net.JoinHostPort(host, fmt.Sprint(tcp.Port))
	}
	creds := insecure.NewCredentials()
	if serverTLS != nil {
		c, err := selfTLS(serverTLS)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(c)
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds),
		grpc.WithChainStreamInterceptor(streamBodyErrors),
		// An answer over gRPC's default 4 MiB (a big export or report) is
		// sent on; a request over it is still refused by the server.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
}

// selfTLS is a client config that trusts exactly the certificate
// serverTLS answers with at the time of each handshake, so the gateway's
// connection to its own server survives a renewal (config.TLS.Server).
func selfTLS(serverTLS *tls.Config) (*tls.Config, error) {
	current := func() (*tls.Certificate, error) {
		if serverTLS.GetCertificate != nil {
			return serverTLS.GetCertificate(&tls.ClientHelloInfo{})
		}
		if len(serverTLS.Certificates) == 0 {
			return nil, errors.New("tls: the server has no certificate")
		}
		return &serverTLS.Certificates[0], nil
	}
	if c, err := current(); err != nil {
		return nil, err
	} else if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("tls: the server has no certificate")
	}
	return &tls.Config{
		// Verified below, against the server's own certificate: no name
		// or CA to check it by.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			c, err := current()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, c.Certificate[0]) {
				return errors.New("tls: the gateway's own server answered with a certificate it does not serve")
			}
			return nil
		},
		MinVersion: tls.VersionTLS12,
	}, nil
}

// webServer is Serve's HTTP side.
type webServer struct {
	srv  *http.Server
	conn *grpc.ClientConn
	done chan struct{} // closed when srv.Serve has returned err
	err  error
}

func (s *Server) startHTTP(ctx context.Context, grpcAddr net.Addr) (*webServer, error) {
	conn, err := dialSelf(grpcAddr, s.tls)
	if err != nil {
		return nil, fmt.Errorf("http gateway: %w", err)
	}
	h, err := httpHandler(ctx, conn, s.gateways...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if s.verifier != nil {
		h = authenticated(s.verifier, h)
	}
	w := &webServer{conn: conn, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}}
	go func() {
		if s.tls != nil {
			w.srv.TLSConfig = s.tls // ServeTLS offers HTTP/2 on a copy of it
			w.err = w.srv.ServeTLS(s.web, "", "")
		} else {
			w.err = w.srv.Serve(s.web)
		}
		close(w.done)
	}()
	return w, nil
}

// stop lets running HTTP calls finish until deadline, then closes them.
func (w *webServer) stop(deadline time.Time, log *slog.Logger) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := w.srv.Shutdown(ctx); err != nil {
		log.Warn("grace period over, closing open http calls", "err", err)
		w.srv.Close()
	}
	<-w.done
	w.conn.Close()
	if errors.Is(w.err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http: %w", w.err)
}
