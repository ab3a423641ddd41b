package coding

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// overheadTable renders DESIGN.md's table of storage overhead (bytes stored
// over all shards / blob bytes) from the parameters, so the document cannot
// drift from the code.
func overheadTable(t *testing.T) string {
	type column struct {
		n   int
		enc Encoding
	}
	cols := []column{{10, RS8}, {100, RS8}, {100, Leopard16}, {100, Lanes16}, {1000, Leopard16}, {1000, Lanes16}}
	sizes := []struct {
		name  string
		bytes uint64
	}{
		{"1 KiB", 1 << 10}, {"16 KiB", 16 << 10}, {"256 KiB", 256 << 10}, {"1 MiB", 1 << 20},
		{"16 MiB", 16 << 20}, {"64 MiB", 64 << 20}, {"256 MiB", 256 << 20}, {"1 GiB", 1 << 30},
	}
	var b strings.Builder
	b.WriteString("| blob size |")
	for _, c := range cols {
		fmt.Fprintf(&b, " n=%d %s |", c.n, c.enc)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, sz := range sizes {
		fmt.Fprintf(&b, "| %s |", sz.name)
		for _, c := range cols {
			p, err := NewParams(c.n, WithEncoding(c.enc))
			if err != nil {
				t.Fatal(err)
			}
			stored, err := p.EncodedSize(sz.bytes)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, " %.2f× |", float64(stored)/float64(sz.bytes))
		}
		b.WriteString("\n")
	}
	b.WriteString("| limit (large blobs) |")
	for _, c := range cols {
		p, _ := NewParams(c.n, WithEncoding(c.enc))
		fmt.Fprintf(&b, " %.2f× |", float64(p.Shards*(p.NP+p.NS))/float64(p.NP*p.NS))
	}
	b.WriteString("\n")
	return b.String()
}

func TestDesignOverheadTableIsCurrent(t *testing.T) {
	doc, err := os.ReadFile("DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	if table := overheadTable(t); !strings.Contains(string(doc), table) {
		t.Fatalf("coding/DESIGN.md's overhead table is out of date; it should read:\n\n%s", table)
	}
}
