package wire

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Access is who may call a method.
type Access int

const (
	// Anyone: no credential (what is served is public, or is checked
	// against the control plane's state before it is kept).
	Anyone Access = iota + 1
	// NodeSignature: the request carries a registered storage node's
	// signature of it, checked against the node's key before any work.
	NodeSignature
	// ClientToken: a client's bearer token.
	ClientToken
	// Operator: the operator's bearer token.
	Operator
)

func (a Access) String() string {
	switch a {
	case Anyone:
		return "anyone"
	case NodeSignature:
		return "node signature"
	case ClientToken:
		return "client token"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("access(%d)", int(a))
}

// Policy is a server's authorization table: every method it serves, by
// full name ("/weft.v1.Admin/Status"), and who may call it. A method
// missing from the table is refused, so a new RPC is closed until someone
// decides who may call it.
type Policy map[string]Access

// Check authenticates one call for its table entry. req is the request
// message: for a unary call, or a stream's first message from the caller;
// nil for a stream whose caller sends nothing the check needs (only
// NodeSignature checks wait for it). It returns the context the handler
// runs with (carrying the caller's identity) or an Unauthenticated or
// PermissionDenied status.
type Check func(ctx context.Context, method string, access Access, req any) (context.Context, error)

// ServerOptions are the interceptors that enforce the table on unary
// calls and streams alike; they run before the handler does any work.
func (p Policy) ServerOptions(check Check) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(p.unary(check)),
		grpc.ChainStreamInterceptor(p.stream(check)),
	}
}

func (p Policy) lookup(method string) (Access, error) {
	a, ok := p[method]
	if !ok {
		return 0, status.Errorf(codes.PermissionDenied, "method %s is not in this server's authorization table", method)
	}
	return a, nil
}

func (p Policy) unary(check Check) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		access, err := p.lookup(info.FullMethod)
		if err != nil {
			return nil, err
		}
		ctx, err = check(ctx, info.FullMethod, access, req)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (p Policy) stream(check Check) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		access, err := p.lookup(info.FullMethod)
		if err != nil {
			return err
		}
		if access == NodeSignature {
			// The signature travels in the first message: the handler's
			// first receive checks it before returning it.
			return handler(srv, &checkedStream{ServerStream: ss, check: check, method: info.FullMethod})
		}
		ctx, err := check(ss.Context(), info.FullMethod, access, nil)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// checkedStream checks its first received message as a signed request.
type checkedStream struct {
	grpc.ServerStream
	check   Check
	method  string
	checked bool
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked {
		if _, err := s.check(s.ServerStream.Context(), s.method, NodeSignature, m); err != nil {
			return err
		}
		s.checked = true
	}
	return nil
}

// Unlisted returns the methods of the weft services a server registers
// that its table lacks, and the table's entries no registered service
// has — read from the generated descriptors, so a new RPC cannot be
// forgotten. services are full service names ("weft.v1.Admin").
func (p Policy) Unlisted(services ...string) (missing, unknown []string, err error) {
	served := map[string]bool{}
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, nil, fmt.Errorf("%s is not a service", name)
		}
		for i := 0; i < sd.Methods().Len(); i++ {
			method := "/" + name + "/" + string(sd.Methods().Get(i).Name())
			served[method] = true
			if _, ok := p[method]; !ok {
				missing = append(missing, method)
			}
		}
	}
	for method := range p {
		if !served[method] {
			unknown = append(unknown, method)
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	return missing, unknown, nil
}
