package wire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLSFiles is a process's TLS setup, as PEM files named on its command
// line. All empty: plaintext (a network on one host, or behind its own
// encryption).
type TLSFiles struct {
	// CA holds the certificates the process trusts for the servers it
	// dials; set, every connection it makes uses TLS.
	CA string
	// Cert and Key are the process's own certificate and key: its servers
	// serve them, and it presents them when it dials (for servers that
	// ask for client certificates).
	Cert, Key string
	// ClientCA makes the process's servers require client certificates
	// signed by one of its certificates (mutual TLS).
	ClientCA string
}

// Serving reports whether the process's servers use TLS.
func (f TLSFiles) Serving() bool { return f.Cert != "" || f.Key != "" }

// ServerConfig is the TLS configuration of the process's servers, nil when
// they serve plaintext.
func (f TLSFiles) ServerConfig() (*tls.Config, error) {
	if !f.Serving() {
		if f.ClientCA != "" {
			return nil, errors.New("wire: a client CA needs the server's own certificate and key too")
		}
		return nil, nil
	}
	pair, err := f.reloadingPair()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: pair.forServer, MinVersion: tls.VersionTLS12}
	if f.ClientCA != "" {
		pool, err := loadPool(f.ClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig is the TLS configuration of the connections the process
// makes, nil when they are plaintext.
func (f TLSFiles) ClientConfig() (*tls.Config, error) {
	if f.CA == "" {
		return nil, nil
	}
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if f.Serving() {
		pair, err := f.reloadingPair()
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = pair.forClient
	}
	return cfg, nil
}

// ServerCredentials are the gRPC credentials of the process's servers:
// TLS, or plaintext (insecure) when no certificate is set.
func (f TLSFiles) ServerCredentials() (credentials.TransportCredentials, error) {
	cfg, err := f.ServerConfig()
	if err != nil || cfg == nil {
		return insecure.NewCredentials(), err
	}
	return credentials.NewTLS(cfg), nil
}

// DialCredentials are the gRPC credentials of the connections the process
// makes: TLS when a CA is set, plaintext otherwise.
func (f TLSFiles) DialCredentials() (credentials.TransportCredentials, error) {
	cfg, err := f.ClientConfig()
	if err != nil || cfg == nil {
		return insecure.NewCredentials(), err
	}
	return credentials.NewTLS(cfg), nil
}

// reloadingPair loads the certificate and key, and again whenever either
// file changes, so that a certificate renewed on disk is served from the
// next handshake on, without a restart. (The CA files are read once.)
func (f TLSFiles) reloadingPair() (*reloadingPair, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("wire: a TLS certificate needs both its file and its key's")
	}
	p := &reloadingPair{certFile: f.Cert, keyFile: f.Key}
	if _, err := p.get(); err != nil {
		return nil, err
	}
	return p, nil
}

type reloadingPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string    // the files' sizes and modification times when loaded
	checked time.Time // when they were last looked at
}

// recheck bounds how often the files are looked at: at most once a second,
// however many handshakes there are.
const recheck = time.Second

// get returns the certificate, reloaded first if its files changed. A
// reload that fails (a renewal caught half-written) keeps the old one.
func (p *reloadingPair) get() (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cert != nil && time.Since(p.checked) < recheck {
		return p.cert, nil
	}
	p.checked = time.Now()
	stamp := fileStamp(p.certFile) + "|" + fileStamp(p.keyFile)
	if p.cert != nil && stamp == p.stamp {
		return p.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		if p.cert != nil {
			return p.cert, nil
		}
		return nil, fmt.Errorf("wire: loading the TLS certificate %s and key %s: %w", p.certFile, p.keyFile, err)
	}
	p.cert, p.stamp = &cert, stamp
	return p.cert, nil
}

func (p *reloadingPair) forServer(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.get() }

func (p *reloadingPair) forClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.get()
}

func fileStamp(name string) string {
	info, err := os.Stat(name)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d@%d", info.Size(), info.ModTime().UnixNano())
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("wire: reading CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("wire: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// PeerConfigs are the TLS configurations of a link between peers of one
// kind (voter to voter, for Raft): both sides present their certificate
// and check the other's — the server requires one signed by ClientCA, or
// by CA when no ClientCA is set. Both nil when the process has no
// certificate or no CA: the link stays plaintext.
func (f TLSFiles) PeerConfigs() (server, client *tls.Config, err error) {
	if !f.Serving() || f.CA == "" {
		return nil, nil, nil
	}
	if f.ClientCA == "" {
		f.ClientCA = f.CA
	}
	if server, err = f.ServerConfig(); err != nil {
		return nil, nil, err
	}
	if client, err = f.ClientConfig(); err != nil {
		return nil, nil, err
	}
	return server, client, nil
}
