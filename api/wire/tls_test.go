package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveHealth serves gRPC's health service with the TLS setup and returns
// its address.
func serveHealth(t *testing.T, f TLSFiles) string {
	t.Helper()
	creds, err := f.ServerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(ServerOptions(), grpc.Creds(creds))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func check(t *testing.T, addr string, f TLSFiles) error {
	t.Helper()
	creds, err := f.DialCredentials()
	if err != nil {
		t.Fatal(err)
	}
	return healthCheck(t, addr, append(DialOptions(), grpc.WithTransportCredentials(creds))...)
}

func plaintext(t *testing.T, addr string) error {
	t.Helper()
	return healthCheck(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func healthCheck(t *testing.T, addr string, opts ...grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// A TLS server answers clients that trust its CA, and no one else: not a
// plaintext client, not one that trusts another CA.
func TestTLS(t *testing.T) {
	ours, theirs := twoCAs(t)
	addr := serveHealth(t, TLSFiles{Cert: ours.Cert, Key: ours.Key})
	if err := check(t, addr, TLSFiles{CA: ours.CA}); err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
	if err := plaintext(t, addr); status.Code(err) != codes.Unavailable {
		t.Fatalf("a plaintext client: %v, want Unavailable", err)
	}
	if err := check(t, addr, TLSFiles{CA: theirs.CA}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a client trusting another CA: %v, want Unavailable", err)
	}
}

// With a client CA the server asks for a certificate and refuses a client
// without one, or with one that CA did not sign.
func TestMutualTLS(t *testing.T) {
	ours, theirs := twoCAs(t)
	addr := serveHealth(t, TLSFiles{Cert: ours.Cert, Key: ours.Key, ClientCA: ours.CA})
	if err := check(t, addr, ours); err != nil {
		t.Fatalf("a client with a certificate of the CA: %v", err)
	}
	if err := check(t, addr, TLSFiles{CA: ours.CA}); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := check(t, addr, TLSFiles{CA: ours.CA, Cert: theirs.Cert, Key: theirs.Key}); err == nil {
		t.Fatal("a client with another CA's certificate was served")
	}
}

// Half a setup is an error, not plaintext.
func TestTLSFilesIncomplete(t *testing.T) {
	if _, err := (TLSFiles{Cert: "cert.pem"}).ServerCredentials(); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	if _, err := (TLSFiles{ClientCA: "ca.pem"}).ServerCredentials(); err == nil {
		t.Fatal("a client CA without a server certificate was accepted")
	}
	if _, err := (TLSFiles{CA: "/nonexistent/ca.pem"}).DialCredentials(); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

// twoCAs makes two unrelated devnet CAs, each with its certificate.
func twoCAs(t *testing.T) (ours, theirs TLSFiles) {
	t.Helper()
	for _, f := range []*TLSFiles{&ours, &theirs} {
		ca, err := NewDevCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if *f, err = ca.Issue("host", "", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	return ours, theirs
}

// A certificate renewed on disk is served from the next handshake on,
// without a restart; a half-written renewal keeps the old one.
func TestTLSCertificateReload(t *testing.T) {
	first, second := twoCAs(t)
	dir := t.TempDir()
	served := TLSFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	install := func(from TLSFiles) {
		for src, dst := range map[string]string{from.Cert: served.Cert, from.Key: served.Key} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	addr := serveHealth(t, served)
	pool := x509.NewCertPool()
	for _, ca := range []string{first.CA, second.CA} {
		b, _ := os.ReadFile(ca)
		pool.AppendCertsFromPEM(b)
	}
	servedCert := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	leaf := func(f TLSFiles) []byte {
		b, _ := os.ReadFile(f.Cert)
		block, _ := pem.Decode(b)
		return block.Bytes
	}
	if !bytes.Equal(servedCert(), leaf(first)) {
		t.Fatal("not serving the installed certificate")
	}
	install(second)
	time.Sleep(recheck + 100*time.Millisecond)
	if !bytes.Equal(servedCert(), leaf(second)) {
		t.Fatal("the renewed certificate was not picked up")
	}
	// A renewal caught half-written: the key file is cut short.
	if err := os.WriteFile(served.Key, []byte("-----BEGIN EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(recheck + 100*time.Millisecond)
	if !bytes.Equal(servedCert(), leaf(second)) {
		t.Fatal("a broken renewal replaced the working certificate")
	}
}
