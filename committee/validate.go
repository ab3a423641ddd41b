package committee

import (
	"fmt"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds on what callers send, checked before anything is proposed or
// allocated for: every string becomes part of a bbolt key or record on
// every replica, and of every watcher's answer.
const (
	// maxStringField bounds every string field of every request (a
	// challenge verdict's reason is the longest: evidence for operators).
	maxStringField = 4096
	// maxAddressLength bounds a host:port.
	maxAddressLength = 256
	// maxIDLength bounds node, client and voter IDs.
	maxIDLength = maxNodeIDLength
)

// checkStrings refuses a request with a string field (at any depth) longer
// than maxStringField, naming the field.
func checkStrings(m proto.Message) error {
	var err error
	walkStrings(m.ProtoReflect(), func(fd protoreflect.FieldDescriptor, v string) bool {
		if len(v) > maxStringField {
			err = status.Errorf(codes.InvalidArgument, "field %s of %d bytes (at most %d)", fd.Name(), len(v), maxStringField)
			return false
		}
		return true
	})
	return err
}

func walkStrings(m protoreflect.Message, fn func(protoreflect.FieldDescriptor, string) bool) bool {
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len() && ok; i++ {
				ok = walkValue(fd, l.Get(i), fn)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				ok = walkValue(fd.MapKey(), k.Value(), fn) && walkValue(fd.MapValue(), mv, fn)
				return ok
			})
		default:
			ok = walkValue(fd, v, fn)
		}
		return ok
	})
	return ok
}

func walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, fn func(protoreflect.FieldDescriptor, string) bool) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return fn(fd, v.String())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walkStrings(v.Message(), fn)
	}
	return true
}

// checkID refuses an ID (what names a node, client or voter) that is
// empty, longer than maxIDLength or has characters outside
// [A-Za-z0-9._:-].
func checkID(what, id string) error {
	if id == "" || len(id) > maxIDLength {
		return status.Errorf(codes.InvalidArgument, "%s ID of %d bytes (1–%d)", what, len(id), maxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return status.Errorf(codes.InvalidArgument, "%s ID %q has %q at byte %d (allowed: letters, digits, '.', '_', ':', '-')", what, id, id[i], i)
		}
	}
	return nil
}

// checkAddress refuses what is not host:port with a port number.
func checkAddress(what, addr string) error {
	if len(addr) > maxAddressLength {
		return status.Errorf(codes.InvalidArgument, "%s address of %d bytes (at most %d)", what, len(addr), maxAddressLength)
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		err = fmt.Errorf("no host")
	}
	if err == nil {
		if p, perr := strconv.ParseUint(port, 10, 16); perr != nil || p == 0 {
			err = fmt.Errorf("port %q", port)
		}
	}
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "%s address %q: want host:port (%v)", what, addr, err)
	}
	return nil
}
