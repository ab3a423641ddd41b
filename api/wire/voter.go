package wire

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// A control-plane voter's certificate names the voter it belongs to with
// a URI subject alternative name weft://voter/<ID>, ID being its Raft
// server ID (`weft control --id`). Raft's port takes a connection only
// from a certificate with such a name (committee/DESIGN.md, "Transport
// security"): the shared CA also signs storage nodes' and gateways'
// certificates, and those must not reach the log. There is no fallback on
// the Subject's CommonName: any certificate has one, so a node's could
// happen to spell a voter's ID.
const (
	voterScheme = "weft"
	voterHost   = "voter"
)

// VoterURI is the identity a certificate of voter id carries.
func VoterURI(id string) *url.URL {
	return &url.URL{Scheme: voterScheme, Host: voterHost, Path: "/" + id}
}

// VoterID is the voter a certificate names; "" and no error when it names
// none. A certificate naming two voters is refused rather than guessed at.
func VoterID(cert *x509.Certificate) (string, error) {
	var id string
	for _, u := range cert.URIs {
		if u.Scheme != voterScheme || u.Host != voterHost {
			continue
		}
		v := strings.TrimPrefix(u.Path, "/")
		if v == "" || strings.Contains(v, "/") {
			return "", fmt.Errorf("wire: certificate %q: malformed voter identity %s", cert.Subject, u)
		}
		if id != "" && id != v {
			return "", fmt.Errorf("wire: certificate %q names two voters, %s and %s", cert.Subject, id, v)
		}
		id = v
	}
	return id, nil
}
