// Package wiretest holds the checks every weft gRPC server's tests run
// against its authorization table (wire.Policy).
package wiretest

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/weftstore/weft/api/wire"
)

// RequireComplete fails the test if a method of services (full names,
// "weft.v1.Admin") is missing from policy, or policy names a method none
// of them has.
func RequireComplete(t testing.TB, policy wire.Policy, services ...string) {
	t.Helper()
	missing, unknown, err := policy.Unlisted(services...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range missing {
		t.Errorf("%s is served but not in the authorization table", m)
	}
	for _, m := range unknown {
		t.Errorf("the authorization table names %s, which no registered service has", m)
	}
}

// RequireRefusedWithout calls every method of services that policy does
// not open to anyone, over conn, with an empty request and the outgoing
// metadata of ctx (no credential, or a wrong one), streams included, and
// fails the test unless each is refused with Unauthenticated or
// PermissionDenied. It returns how many methods it called.
func RequireRefusedWithout(ctx context.Context, t testing.TB, conn *grpc.ClientConn, policy wire.Policy, services ...string) int {
	t.Helper()
	calls := 0
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			method := "/" + name + "/" + string(md.Name())
			if policy[method] == wire.Anyone {
				continue
			}
			calls++
			if code := call(ctx, conn, method, md); code != codes.Unauthenticated && code != codes.PermissionDenied {
				t.Errorf("%s (%v) without its credential: %s, want Unauthenticated or PermissionDenied", method, policy[method], code)
			}
		}
	}
	return calls
}

// call invokes method with an empty request and returns the status code.
func call(ctx context.Context, conn *grpc.ClientConn, method string, md protoreflect.MethodDescriptor) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, resp := dynamicpb.NewMessage(md.Input()), dynamicpb.NewMessage(md.Output())
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return status.Code(conn.Invoke(ctx, method, req, resp))
	}
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}
	stream, err := conn.NewStream(ctx, desc, method)
	if err != nil {
		return status.Code(err)
	}
	if err := stream.SendMsg(req); err != nil && err != io.EOF {
		return status.Code(err)
	}
	if err := stream.CloseSend(); err != nil {
		return status.Code(err)
	}
	for {
		if err := stream.RecvMsg(resp); err == io.EOF {
			return codes.OK // answered
		} else if err != nil {
			return status.Code(err)
		}
	}
}
