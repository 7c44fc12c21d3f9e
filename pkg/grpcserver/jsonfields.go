package grpcserver

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// UnknownFieldError is a JSON request naming a field its message does
// not have. protojson says only which name and where in the bytes; this
// says where in the request, so an HTTP caller can fix the right field.
type UnknownFieldError struct {
	// Path is the field as a violation names it, e.g. "attribution.campaign".
	Path string
	// Message is the type that lacks it; Known, the JSON names of the
	// fields it has.
	Message string
	Known   []string
}

func (e *UnknownFieldError) Error() string {
	return fmt.Sprintf("%s%s%s has %s", e.Path, unknownFieldSep, e.Message, strings.Join(e.Known, ", "))
}

// unknownFieldSep follows the path in an UnknownFieldError's text.
const unknownFieldSep = ": unknown field; "

// field is md's field named name (its JSON or proto name), or the error
// for one md does not have, at path+name.
func field(md protoreflect.MessageDescriptor, path, name string) (protoreflect.FieldDescriptor, *UnknownFieldError) {
	if fd := md.Fields().ByJSONName(name); fd != nil {
		return fd, nil
	}
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return fd, nil
	}
	known := make([]string, md.Fields().Len())
	for i := range known {
		known[i] = md.Fields().Get(i).JSONName()
	}
	return nil, &UnknownFieldError{Path: path + name, Message: string(md.Name()), Known: known}
}

// wellKnown: google.protobuf types have their own JSON and text forms.
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// unknownField finds the first field of raw, a JSON object for a message
// of type md, that md does not have, at any depth. Well-known types have
// their own JSON forms and are not looked into.
func unknownField(raw json.RawMessage, md protoreflect.MessageDescriptor, path string) *UnknownFieldError {
	if wellKnown(md) {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		fd, err := field(md, path, name)
		if err != nil {
			return err
		}
		at := path + string(fd.Name())
		switch {
		case fd.Message() == nil:
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal(obj[name], &m)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				if e := unknownField(m[k], fd.MapValue().Message(), at+"["+k+"]."); e != nil {
					return e
				}
			}
		case fd.IsList():
			var l []json.RawMessage
			_ = json.Unmarshal(obj[name], &l)
			for i, v := range l {
				if e := unknownField(v, fd.Message(), fmt.Sprintf("%s[%d].", at, i)); e != nil {
					return e
				}
			}
		default:
			if e := unknownField(obj[name], fd.Message(), at+"."); e != nil {
				return e
			}
		}
	}
	return nil
}

// BadValueError is a JSON request whose field holds a value its type does
// not take (a word for a number, an unknown enum name), named by its path
// in the request: protojson says only the field's name and where in the
// bytes.
type BadValueError struct {
	Path string
	// Want says what the field takes, in the API's words ("" when it
	// cannot say): the parser's own text names lines and columns.
	Want string
	Err  error
}

func (e *BadValueError) Error() string {
	if e.Want != "" {
		return e.Path + ": " + e.Want
	}
	return e.Path + ": " + e.Err.Error()
}

// shape is a list or map field given something else: what it takes is
// its shape, not its elements' kind.
type shape struct {
	protoreflect.FieldDescriptor
	want string
}

// wants says what a field of fd's kind takes in JSON.
func wants(fd protoreflect.FieldDescriptor) string {
	if s, ok := fd.(shape); ok {
		return s.want
	}
	if ed := fd.Enum(); ed != nil && ed.FullName() != "google.protobuf.NullValue" {
		var names []string
		for i := range ed.Values().Len() {
			if v := ed.Values().Get(i); v.Number() != 0 {
				names = append(names, string(v.Name()))
			}
		}
		return "must be one of " + strings.Join(names, ", ")
	}
	if md := fd.Message(); md != nil {
		switch md.FullName() {
		case "google.protobuf.Timestamp":
			return `must be an RFC 3339 time, like "2026-12-01T09:30:00Z"`
		case "google.protobuf.Duration":
			return `must be a duration in seconds, like "90s"`
		}
		return "must be a JSON object of " + string(md.Name())
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "must be true or false"
	case protoreflect.StringKind:
		return "must be a string"
	case protoreflect.BytesKind:
		return "must be base64"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "must be a number"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return fmt.Sprintf("must be a whole number from %d to %d", math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return fmt.Sprintf("must be a whole number from %d to %d", math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return fmt.Sprintf("must be a whole number from 0 to %d", uint32(math.MaxUint32))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return fmt.Sprintf("must be a whole number from 0 to %d", uint64(math.MaxUint64))
	}
	return ""
}
func (e *BadValueError) Unwrap() error { return e.Err }

// badValue finds the first field of raw, a JSON object for a message of
// type md, whose value does not decode, at any depth: each field is
// decoded on its own, and a failing message, list or map is looked into.
// "" when none fails on its own; with the field (of a map, its value).
func badValue(raw json.RawMessage, md protoreflect.MessageDescriptor, path string, u protojson.UnmarshalOptions) (string, protoreflect.FieldDescriptor) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", nil
	}
	decodes := func(name string, v json.RawMessage) bool {
		one, err := json.Marshal(map[string]json.RawMessage{name: v})
		return err == nil && u.Unmarshal(one, dynamicpb.NewMessage(md)) == nil
	}
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		fd, err := field(md, path, name)
		if err != nil || decodes(name, obj[name]) {
			continue // an unknown field is reported as such
		}
		at := path + string(fd.Name())
		switch {
		case fd.IsMap():
			var m map[string]json.RawMessage
			if json.Unmarshal(obj[name], &m) != nil {
				return at, shape{fd, "must be a JSON object"}
			}
			for _, k := range slices.Sorted(maps.Keys(m)) {
				one, _ := json.Marshal(map[string]json.RawMessage{k: m[k]})
				if decodes(name, one) {
					continue
				}
				if v := fd.MapValue().Message(); v != nil && !wellKnown(v) {
					if p, f := badValue(m[k], v, at+"["+k+"].", u); p != "" {
						return p, f
					}
				}
				return at + "[" + k + "]", fd.MapValue()
			}
		case fd.IsList():
			var l []json.RawMessage
			if json.Unmarshal(obj[name], &l) != nil {
				return at, shape{fd, "must be a list"}
			}
			for i, v := range l {
				one, _ := json.Marshal([]json.RawMessage{v})
				if decodes(name, one) {
					continue
				}
				elem := fmt.Sprintf("%s[%d]", at, i)
				if m := fd.Message(); m != nil && !wellKnown(m) {
					if p, f := badValue(v, m, elem+".", u); p != "" {
						return p, f
					}
				}
				return elem, fd
			}
		case fd.Message() != nil && !wellKnown(fd.Message()):
			if p, f := badValue(obj[name], fd.Message(), at+".", u); p != "" {
				return p, f
			}
		}
		return at, fd
	}
	return "", nil
}
