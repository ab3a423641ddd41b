package wire

import (
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
)

// A voter's certificate names it by its URI SAN; any other certificate
// names no voter, whatever its CommonName; two voters in one are refused.
func TestVoterID(t *testing.T) {
	ca, err := NewDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, voter := range map[string]string{"control-1": "control-1", "node-0": "", "v1": ""} {
		files, err := ca.Issue(name, voter, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := VoterID(pair.Leaf); err != nil || got != voter {
			t.Errorf("%s: VoterID %q, %v; want %q", name, got, err, voter)
		}
		if voter == "" {
			continue
		}
		if got := pair.Leaf.URIs[0].String(); got != "weft://voter/"+voter {
			t.Errorf("%s: URI SAN %s", name, got)
		}
		pair.Leaf.URIs = append(pair.Leaf.URIs, &url.URL{Scheme: "weft", Host: "voter", Path: "/other"})
		if _, err := VoterID(pair.Leaf); err == nil || !strings.Contains(err.Error(), "two voters") {
			t.Errorf("a certificate naming two voters: %v", err)
		}
	}
}
