package grpcserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The gateway sends a client-streaming body (ImportLeads' rows) from a
// goroutine that stops at the first value that does not decode and
// half-closes the stream, so the call would end as a success with the bad
// value and everything after it silently dropped. These pieces carry that
// decode error from the body to the stream's end, where it becomes the
// call's INVALID_ARGUMENT, written after the results of the values before
// it.

// requestBody is a request body that remembers the first value of it that
// did not decode.
type requestBody struct {
	io.ReadCloser
	mu      sync.Mutex
	decoded int // values decoded so far
	err     error
	// read counts the bytes read since the value being decoded began
	// (by the decoding goroutine only); cut is set once a value was too
	// long, and the rest of the body is left unread.
	read int64
	cut  atomic.Bool
	// ended is set once a read met the body's end.
	ended atomic.Bool
	// path holds the route's path parameters (set before the body is
	// decoded), which a body must not contradict.
	path map[string]string
}

// maxValueBytes bounds one JSON value of a request body (a unary call's
// body, or one row of a stream), so a body is never held whole however
// long it is: four times gRPC's default message limit, for JSON's
// overhead.
const maxValueBytes = 16 << 20

func (b *requestBody) Read(p []byte) (int, error) {
	left := maxValueBytes - b.read
	if left < 0 {
		b.cut.Store(true)
		return 0, fmt.Errorf("a value is over %d MiB", maxValueBytes>>20)
	}
	if int64(len(p)) > left+1 {
		p = p[:left+1] // one byte past the limit tells a value too long
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if errors.Is(err, io.EOF) {
		b.ended.Store(true)
	}
	return n, err
}

func (b *requestBody) record(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.decoded++
	case b.err == nil && errors.Is(err, errMoreFollows):
		b.err = fmt.Errorf("request body: %w", err)
	case b.err == nil && !errors.Is(err, io.EOF):
		b.err = fmt.Errorf("request body: value %d does not decode: %w", b.decoded+1, err)
	}
}

func (b *requestBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

type bodyKey struct{}

// withBody wraps each request's body in a requestBody that the call's
// context can find.
func withBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := &requestBody{ReadCloser: r.Body}
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		r.Body = b
		h.ServeHTTP(w, r)
		if r.ProtoMajor == 1 && b.ReadCloser != http.NoBody && !b.ended.Load() && !closing(w) {
			// The call left part of the body unread: a path nothing
			// answers, a value that did not decode, a stream the server
			// ended. The rest must end here: the server's own read to
			// its end, after the handler, starts a read of the next
			// request that panics the connection's next read
			// (golang/go#68560). A client that keeps its body open until
			// the answer ends gets its end after drainWait.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(drainWait))
			n, _ := io.Copy(io.Discard, io.LimitReader(b.ReadCloser, maxValueBytes))
			if n == maxValueBytes {
				// More yet: the server must not read on to its end either.
				_ = rc.SetReadDeadline(time.Now())
			}
		}
	})
}

// drainWait bounds how long the rest of a body the call left unread is
// read after its answer.
const drainWait = time.Second

// closing reports whether the answer tells the client the connection
// closes after it: the server then never reads another request on it.
func closing(w http.ResponseWriter) bool {
	return strings.EqualFold(w.Header().Get("Connection"), "close")
}

// decodeRecorder is the gateway's marshaler, with decoders that report
// their errors to the requestBody they read.
// A message is decoded as the gateway's JSONPb does it (one JSON value,
// then protojson), except that a field the message does not have is
// reported by its path in the request (UnknownFieldError).
type decodeRecorder struct {
	runtime.Marshaler
	unmarshal protojson.UnmarshalOptions
}

func (m decodeRecorder) NewDecoder(r io.Reader) runtime.Decoder {
	jd := json.NewDecoder(r)
	other := runtime.DecoderWrapper{Decoder: jd, UnmarshalOptions: m.unmarshal}
	b, _ := r.(*requestBody)
	return runtime.DecoderFunc(func(v any) error {
		if b != nil {
			b.read = 0
		}
		err := m.decode(jd, other, v)
		if b != nil {
			if err == nil {
				err = samePath(v, b.path)
			}
			b.record(err)
		}
		return err
	})
}

func (m decodeRecorder) decode(jd *json.Decoder, other runtime.Decoder, v any) error {
	p, ok := v.(proto.Message)
	if !ok {
		return other.Decode(v)
	}
	var raw json.RawMessage
	if err := jd.Decode(&raw); err != nil {
		return err
	}
	err := m.unmarshal.Unmarshal(raw, p)
	if err != nil {
		md := p.ProtoReflect().Descriptor()
		if uf := unknownField(raw, md, ""); uf != nil {
			return uf
		}
		if path, fd := badValue(raw, md, "", m.unmarshal); path != "" {
			bv := &BadValueError{Path: path, Err: err}
			if fd != nil {
				bv.Want = wants(fd)
			}
			return bv
		}
		return err
	}
	if !streamedIn(p.ProtoReflect().Descriptor().FullName()) {
		// A unary call's body is one value: a second one, or anything
		// else after it, would be dropped unanswered.
		if _, err := jd.Token(); !errors.Is(err, io.EOF) {
			return errMoreFollows
		}
	}
	return nil
}

// errMoreFollows refuses a unary call's body that holds more than its
// one JSON value.
var errMoreFollows = errors.New("more follows the request's JSON value: send one")

// streamedIn reports whether messages named name are sent by a client
// stream (ImportLeads' rows) of a service linked in: a body of them holds
// one value a message.
func streamedIn(name protoreflect.FullName) bool {
	streamedOnce.Do(func() {
		protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
			for i := range f.Services().Len() {
				ms := f.Services().Get(i).Methods()
				for j := range ms.Len() {
					if m := ms.Get(j); m.IsStreamingClient() {
						streamed[m.Input().FullName()] = true
					}
				}
			}
			return true
		})
	})
	return streamed[name]
}

var (
	streamedOnce sync.Once
	streamed     = map[protoreflect.FullName]bool{}
)

// withPath lets the body's decoder see the route's path parameters.
func withPath(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if served, ok := r.Context().Value(probeKey{}).(*bool); ok {
			*served = true
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodDelete && r.URL.RawQuery != "" {
			// Every route with a body takes the whole request from it
			// (body "*"), and the gateway never reads such a route's
			// query: an idempotency key sent there would be dropped.
			name := "query" // one that names no parameter ("?&")
			if names := slices.Sorted(maps.Keys(r.URL.Query())); len(names) > 0 {
				name = names[0]
			}
			why := r.Method + " routes read the JSON body, not the query"
			writeStatus(w, status.Convert(InvalidArgument(name+": "+why, FieldViolation{Field: name, Description: why})))
			return
		}
		if name, bad := notUTF8(params, r.URL.Query()); bad {
			// The gateway's own client would fail to encode it, as
			// INTERNAL, before the server's check of the field.
			why := "is not valid UTF-8"
			writeStatus(w, status.Convert(InvalidArgument(name+": "+why, FieldViolation{Field: name, Description: why})))
			return
		}
		if b, ok := r.Context().Value(bodyKey{}).(*requestBody); ok {
			b.path = params
		}
		next(w, r, params)
	}
}

// notUTF8 names the first path parameter or query key whose value (or
// key) is not valid UTF-8: "query" for a key that is not.
func notUTF8(path map[string]string, query url.Values) (string, bool) {
	for _, k := range slices.Sorted(maps.Keys(path)) {
		if !utf8.ValidString(path[k]) {
			return k, true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(query)) {
		if !utf8.ValidString(k) {
			return "query", true
		}
		if slices.ContainsFunc(query[k], func(v string) bool { return !utf8.ValidString(v) }) {
			return k, true
		}
	}
	return "", false
}

// PathMismatchError is a body that sets a field its path also names, to
// another value. The gateway would use the path's silently, so a caller
// that put the wrong lead in the URL would act on it unawares.
type PathMismatchError struct {
	Field      string // proto name, as violations name fields
	Body, Path string
}

func (e *PathMismatchError) Error() string {
	return fmt.Sprintf("%s: the body's %q is not the path's %q", e.Field, e.Body, e.Path)
}

// samePath refuses a decoded body whose fields contradict the path's.
// A field the body leaves unset takes the path's value, as before.
func samePath(v any, path map[string]string) error {
	p, ok := v.(proto.Message)
	if !ok || len(path) == 0 {
		return nil
	}
	m := p.ProtoReflect()
	for _, key := range slices.Sorted(maps.Keys(path)) {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(key))
		if fd == nil || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			continue
		}
		want := m.New()
		if runtime.PopulateFieldFromPath(want.Interface(), key, path[key]) != nil {
			continue // the gateway refuses the path itself
		}
		if got := m.Get(fd); !got.Equal(want.Get(fd)) {
			return &PathMismatchError{Field: key, Body: got.String(), Path: path[key]}
		}
	}
	return nil
}

// streamBodyErrors turns the clean end of a client stream whose HTTP body
// stopped decoding into that error, and a value over gRPC's limit into
// INVALID_ARGUMENT.
func streamBodyErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	b, ok := ctx.Value(bodyKey{}).(*requestBody)
	if err != nil || !ok || !desc.ClientStreams {
		return cs, err
	}
	return bodyCheckedStream{ClientStream: cs, body: b}, nil
}

type bodyCheckedStream struct {
	grpc.ClientStream
	body *requestBody
}

func (s bodyCheckedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		if bad := s.body.failed(); bad != nil {
			return InvalidArgument(bad.Error(), bodyViolation(bad))
		}
	}
	// The stream's errors go to the gateway's stream error handler, which
	// maps codes as they are.
	return overLimit(err)
}

// bodyViolation names the field of a body that did not decode: the
// unknown field's path, else the body. Its description does not say the
// field again, as the services' own violations do not.
func bodyViolation(err error) FieldViolation {
	var (
		uf *UnknownFieldError
		bv *BadValueError
		pm *PathMismatchError
	)
	switch {
	case errors.As(err, &uf):
		return FieldViolation{Field: uf.Path, Description: strings.TrimPrefix(uf.Error(), uf.Path+": ")}
	case errors.As(err, &bv):
		return FieldViolation{Field: bv.Path, Description: strings.TrimPrefix(bv.Error(), bv.Path+": ")}
	case errors.As(err, &pm):
		return FieldViolation{Field: pm.Field, Description: strings.TrimPrefix(pm.Error(), pm.Field+": ")}
	}
	return FieldViolation{Field: "body", Description: err.Error()}
}

// paramWants says what the query or path parameter param (a dotted path,
// proto or JSON names) of the call's request takes, "" when it cannot
// tell.
func paramWants(ctx context.Context, param string) string {
	method, ok := runtime.RPCMethod(ctx) // "/leadflow.intake.v1.IntakeService/GetLead"
	if !ok {
		return ""
	}
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return ""
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	sd, isSvc := d.(protoreflect.ServiceDescriptor)
	if err != nil || !isSvc || sd.Methods().ByName(protoreflect.Name(name)) == nil {
		return ""
	}
	md := sd.Methods().ByName(protoreflect.Name(name)).Input()
	var fd protoreflect.FieldDescriptor
	for part := range strings.SplitSeq(param, ".") {
		if md == nil {
			return ""
		}
		if fd, _ = field(md, "", part); fd == nil {
			return ""
		}
		md = fd.Message()
	}
	if fd == nil {
		return ""
	}
	if m := fd.Message(); m != nil && !wellKnown(m) && !fd.IsList() && !fd.IsMap() {
		// A query cannot hold an object: it sets a message by its fields.
		var subs []string
		for i := range m.Fields().Len() {
			subs = append(subs, param+"."+m.Fields().Get(i).JSONName())
		}
		return "is set by its fields in the query: " + strings.Join(subs, ", ")
	}
	return wants(fd)
}

// unparsedParam is the parameter of the gateway's refusal of a query or
// path value that does not parse (`parsing field "from": ...`, `parsing
// list "statuses": ...`, `type mismatch, parameter: version, ...`, a
// value given twice), which
// it passes on as text only, naming a query field by its last name: the
// query's key that ends in it names it whole (`period.from`).
func unparsedParam(msg string, query url.Values) (string, bool) {
	if rest, ok := strings.CutPrefix(msg, "type mismatch, parameter: "); ok {
		field, _, ok := strings.Cut(rest, ",")
		return field, ok && field != ""
	}
	var rest string
	for _, p := range []string{`parsing field "`, `parsing list "`, `parsing map key "`, `parsing map value "`, tooMany} {
		if r, ok := strings.CutPrefix(msg, p); ok {
			rest = r
			break
		}
	}
	name, _, ok := strings.Cut(rest, `"`)
	if !ok || name == "" {
		return "", false
	}
	field := ""
	for k := range query {
		if leaf := k[strings.LastIndex(k, ".")+1:]; leaf == name || leaf == jsonName(name) {
			if field != "" && field != k {
				return name, true // two keys end in it: say no more than the gateway
			}
			field = k
		}
	}
	return cmp.Or(field, name), true
}

// tooMany begins the gateway's refusal of a query parameter of one value
// given more than once.
const tooMany = `too many values for field "`

// jsonName is a proto field name's JSON name (lowerCamelCase).
func jsonName(name string) string {
	var b strings.Builder
	up := false
	for _, r := range name {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// tooLarge reports whether a RESOURCE_EXHAUSTED is the server's refusal
// of a request over gRPC's size limit (grpc-go's wording): the gateway's
// own connection takes answers of any size (dialSelf), so it is never an
// answer's.
func tooLarge(msg string) bool {
	return strings.HasPrefix(msg, "grpc: received message larger than max")
}

// overLimit is err, when it is the server's refusal of a request (or a
// streamed value) that decoded but is over gRPC's message limit, as the
// caller's to fix (400), not a "slow down" (429).
func overLimit(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.ResourceExhausted && tooLarge(s.Message()) {
		return InvalidArgument("request body: "+s.Message(), FieldViolation{Field: "body", Description: "a request is over gRPC's 4 MiB message limit"})
	}
	return err
}

// bodyErrors gives an INVALID_ARGUMENT that the gateway made of a request
// body that did not decode (its text only) the field violation that says
// which field.
func bodyErrors(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	b, _ := r.Context().Value(bodyKey{}).(*requestBody)
	err = overLimit(err)
	if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument && len(s.Details()) == 0 {
		var bad error
		if b != nil {
			bad = b.failed()
		}
		if bad != nil {
			err = InvalidArgument(s.Message(), bodyViolation(bad))
		} else if field, _, ok := strings.Cut(s.Message(), unknownFieldSep); ok && r.URL.RawQuery != "" {
			// strictQuery's refusal, which the gateway passes on as text.
			err = InvalidArgument(s.Message(), FieldViolation{Field: field, Description: strings.TrimPrefix(s.Message(), field+": ")})
		} else if field, ok := unparsedParam(s.Message(), r.URL.Query()); ok {
			desc := s.Message()
			if strings.HasPrefix(desc, tooMany) {
				desc = "is given more than once; it takes one value"
			} else if want := paramWants(ctx, field); want != "" {
				desc = want // the API's words, not strconv's
			}
			msg := desc
			if !strings.HasPrefix(msg, field) {
				msg = field + ": " + desc
			}
			err = InvalidArgument(msg, FieldViolation{Field: field, Description: desc})
		}
	}
	if status.Code(err) == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	if b != nil && b.cut.Load() && r.ProtoMajor == 1 {
		// The rest of a value too long is left unread, and the server
		// drops a connection whose body was left unread: say so, or the
		// client sends its next request into it.
		w.Header().Set("Connection", "close")
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
