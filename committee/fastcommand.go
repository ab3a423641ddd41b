package committee

import (
	"encoding/hex"
)

// A registration's log entry is decoded on every voter: with encoding/json
// that was two passes over the command and two more over its body (the
// body a json.RawMessage, then a strict Decoder), about a tenth of a
// registration's CPU once the FSM's writes were cut (#24). decodeFastCommand
// reads the one form json.Marshal gives a register-blob command — no
// whitespace, fields in declaration order, plain ASCII strings without
// escapes, canonical unsigned integers, a lowercase hex root, no
// attributes — and reports ok only for that form; anything else (another
// kind, attributes, an escape, a duplicate or unknown key, a number out of
// range, trailing bytes, …) returns !ok and is decoded by encoding/json as
// before. Within the form it accepts, it yields what encoding/json would
// (TestFastCommandMatchesJSON, FuzzFastCommand).
func decodeFastCommand(data []byte) (cmd Command, body RegisterBlob, ok bool) {
	p := fastParser{b: data}
	if !p.lit(`{"id":`) {
		return
	}
	if cmd.ID, ok = p.str(); !ok {
		return
	}
	if !p.lit(`,"kind":`) {
		return cmd, body, false
	}
	kind, ok := p.str()
	if !ok || Kind(kind) != KindRegisterBlob {
		return cmd, body, false
	}
	cmd.Kind = KindRegisterBlob
	if !p.lit(`,"body":`) {
		return cmd, body, false
	}
	start := p.i
	if body, ok = p.registerBlob(); !ok {
		return cmd, body, false
	}
	cmd.Body = data[start:p.i:p.i]
	if !p.lit(`}`) || p.i != len(p.b) {
		return cmd, body, false
	}
	return cmd, body, true
}

type fastParser struct {
	b []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *fastParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str reads a string of printable ASCII without escapes.
func (p *fastParser) str() (string, bool) {
	if !p.lit(`"`) {
		return "", false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return "", false
		}
	}
	return "", false
}

// uint reads a canonical unsigned integer of at most max.
func (p *fastParser) uint(max uint64) (uint64, bool) {
	start := p.i
	var v uint64
	for ; p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9'; p.i++ {
		d := uint64(p.b[p.i] - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	n := p.i - start
	if n == 0 || n > 1 && p.b[start] == '0' {
		return 0, false
	}
	// A fraction or an exponent would make it another number.
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	return v, true
}

// registerBlob reads a RegisterBlob body without attributes.
func (p *fastParser) registerBlob() (c RegisterBlob, ok bool) {
	var v uint64
	if !p.lit(`{"client":`) {
		return c, false
	}
	if c.Client, ok = p.str(); !ok {
		return c, false
	}
	if !p.lit(`,"encoding":`) {
		return c, false
	}
	if v, ok = p.uint(0xff); !ok {
		return c, false
	}
	c.Encoding = uint8(v)
	if !p.lit(`,"shards":`) {
		return c, false
	}
	if v, ok = p.uint(0xffffffff); !ok {
		return c, false
	}
	c.Shards = uint32(v)
	if !p.lit(`,"length":`) {
		return c, false
	}
	if c.Length, ok = p.uint(^uint64(0)); !ok {
		return c, false
	}
	if !p.lit(`,"root":"`) || len(p.b)-p.i < 2*len(c.Root)+1 {
		return c, false
	}
	for _, h := range p.b[p.i : p.i+2*len(c.Root)] {
		if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f') {
			return c, false
		}
	}
	if _, err := hex.Decode(c.Root[:], p.b[p.i:p.i+2*len(c.Root)]); err != nil {
		return c, false
	}
	p.i += 2 * len(c.Root)
	if !p.lit(`","end_epoch":`) {
		return c, false
	}
	if c.EndEpoch, ok = p.uint(^uint64(0)); !ok {
		return c, false
	}
	if p.lit(`,"deletable":true`) {
		c.Deletable = true
	}
	return c, p.lit(`}`)
}
