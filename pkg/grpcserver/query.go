package grpcserver

import (
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictQuery parses query parameters as the gateway does, but refuses
// one the request does not have, as a body's unknown field is refused: a
// misspelt filter (?status= for ?statuses=) would otherwise be dropped,
// and the call would answer for everything.
type strictQuery struct{ runtime.DefaultQueryParser }

func (q *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	md := msg.ProtoReflect().Descriptor()
	for _, key := range slices.Sorted(maps.Keys(values)) {
		if err := unknownParam(md, key); err != nil {
			return err
		}
	}
	return q.DefaultQueryParser.Parse(msg, values, filter)
}

// unknownParam checks a parameter's dotted path (proto or JSON names; a
// map entry as name[key]) against md.
func unknownParam(md protoreflect.MessageDescriptor, key string) *UnknownFieldError {
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	path := ""
	for name := range strings.SplitSeq(key, ".") {
		if md == nil { // a path into a scalar
			return &UnknownFieldError{Path: path + name, Message: "a scalar", Known: []string{"nothing"}}
		}
		fd, err := field(md, path, name)
		if err != nil {
			return err
		}
		path += string(fd.Name()) + "."
		if md = fd.Message(); md != nil && wellKnown(md) {
			return nil
		}
	}
	return nil
}
