package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

func mustKey(t testing.TB, seed byte) *SecretKey {
	t.Helper()
	sk, err := KeyGen(bytes.Repeat([]byte{seed, 0x5a}, 16))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// KeyGen is the IETF draft's, which EIP-2333 uses as HKDF_mod_r to derive
// master keys: its published seed → master key pairs pin it.
func TestKeyGenMatchesEIP2333(t *testing.T) {
	for _, tc := range []struct{ seed, master string }{
		{"c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
			"6083874454709270928345386274498605044986640685124978867557563392430687146096"},
		{"3141592653589793238462643383279502884197169399375105820974944592",
			"29757020647961307431480504535336562678282505419141012933316116377660817309383"},
		{"0099FF991111002299DD7744EE3355BBDD8844115566CC55663355668888CC00",
			"27580842291869792442942448775674722299803720648445448686099262467207037398656"},
		{"d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3",
			"19022158461524446591288038168518313374041767046816487870552872741050760015818"},
	} {
		seed, _ := hex.DecodeString(tc.seed)
		sk, err := KeyGen(seed)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := new(big.Int).SetString(tc.master, 10)
		if got := new(big.Int).SetBytes(sk.Bytes()); got.Cmp(want) != 0 {
			t.Fatalf("KeyGen(%s…) = %v, want %v", tc.seed[:8], got, want)
		}
	}
	if _, err := KeyGen(make([]byte, 31)); !errors.Is(err, ErrShortSeed) {
		t.Fatalf("31-byte seed: err = %v", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	sk, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	msg := []byte("weft")
	sig := sk.Sign(msg)
	if err := pk.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify([]byte("weft!"), sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other message: err = %v", err)
	}
	if err := mustKey(t, 1).PublicKey().Verify(msg, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: err = %v", err)
	}
	// Encodings round-trip and have exactly the sizes of the ciphersuite.
	pk2, err := PublicKeyFromBytes(pk.Bytes())
	if err != nil || !pk2.Equal(pk) || len(pk.Bytes()) != 48 {
		t.Fatalf("public key round trip: %v", err)
	}
	sig2, err := SignatureFromBytes(sig.Bytes())
	if err != nil || !bytes.Equal(sig2.Bytes(), sig.Bytes()) || len(sig.Bytes()) != 96 {
		t.Fatalf("signature round trip: %v", err)
	}
	sk2, err := SecretKeyFromBytes(sk.Bytes())
	if err != nil || !sk2.PublicKey().Equal(pk) {
		t.Fatalf("secret key round trip: %v", err)
	}
	order := bls.Order()
	for _, bad := range [][]byte{make([]byte, 32), order, make([]byte, 31)} {
		if _, err := SecretKeyFromBytes(bad); !errors.Is(err, ErrInvalidSecretKey) {
			t.Fatalf("secret key %x accepted", bad)
		}
	}
}

// The rogue-key attack: from a victim's public key an attacker builds a key
// whose sum with the victim's is one it knows the secret of, and so forges
// a "two-signer" aggregate. FastAggregateVerify alone accepts it; the proof
// of possession that registration demands is what stops it.
func TestRogueKeyAttackStoppedByPoP(t *testing.T) {
	victim := mustKey(t, 1).PublicKey()
	attacker := mustKey(t, 2)
	rogue := new(PublicKey)
	negVictim := victim.p
	negVictim.Neg()
	rogue.p.Add(&attacker.PublicKey().p, &negVictim) // a·G1 − victim

	msg := []byte("blob stored")
	forged := attacker.Sign(msg) // a·H(m)
	if err := FastAggregateVerify([]*PublicKey{victim, rogue}, msg, forged); err != nil {
		t.Fatalf("the attack itself does not work, so this test proves nothing: %v", err)
	}
	// The attacker cannot prove possession of the rogue key: neither with
	// its own secret nor by replaying a proof made for another key.
	attempts := []*Signature{attacker.signWith(rogue.Bytes(), popDST), attacker.ProvePossession(), attacker.Sign(rogue.Bytes())}
	for i, pop := range attempts {
		if err := rogue.VerifyPossession(pop); !errors.Is(err, ErrBadProofOfPossession) {
			t.Fatalf("attempt %d: rogue key passes PoP verification: %v", i, err)
		}
	}
	if err := victim.VerifyPossession(mustKey(t, 1).ProvePossession()); err != nil {
		t.Fatalf("the victim's own PoP fails: %v", err)
	}
}

// A PoP is no signature over the key's bytes, and a signature over them is
// no PoP: the two use different DSTs.
func TestPoPAndSignatureAreDistinct(t *testing.T) {
	sk := mustKey(t, 3)
	pk := sk.PublicKey()
	pop := sk.ProvePossession()
	if err := pk.VerifyPossession(pop); err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify(pk.Bytes(), pop); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("PoP verifies as a signature: %v", err)
	}
	if err := pk.VerifyPossession(sk.Sign(pk.Bytes())); !errors.Is(err, ErrBadProofOfPossession) {
		t.Fatalf("signature verifies as a PoP: %v", err)
	}
}

// The identity key with the identity signature would verify any message if
// the identity were accepted; it is refused by every operation.
func TestIdentityKeyRejectedEverywhere(t *testing.T) {
	idKey, err := PublicKeyFromBytes(append([]byte{0xc0}, make([]byte, 47)...))
	if err != nil {
		t.Fatalf("identity key must decode (the vectors require it): %v", err)
	}
	idSig, err := SignatureFromBytes(append([]byte{0xc0}, make([]byte, 95)...))
	if err != nil {
		t.Fatalf("identity signature must decode: %v", err)
	}
	msg := []byte("anything")
	good := mustKey(t, 4)
	checks := map[string]error{
		"Validate":            idKey.Validate(),
		"Verify":              idKey.Verify(msg, idSig),
		"VerifyPossession":    idKey.VerifyPossession(idSig),
		"FastAggregateVerify": FastAggregateVerify([]*PublicKey{idKey}, msg, idSig),
		"AggregateVerify":     AggregateVerify([]*PublicKey{idKey}, [][]byte{msg}, idSig),
		"BatchVerify":         BatchVerify([]*PublicKey{idKey}, [][]byte{msg}, []*Signature{idSig}),
		"FastAggregateVerify with a valid key": FastAggregateVerify(
			[]*PublicKey{good.PublicKey(), idKey}, msg, good.Sign(msg)),
	}
	_, err = AggregatePublicKeys([]*PublicKey{idKey})
	checks["AggregatePublicKeys"] = err
	// Keys that cancel out aggregate to the identity: refused too.
	neg := good.PublicKey()
	neg.p.Neg()
	_, err = AggregatePublicKeys([]*PublicKey{good.PublicKey(), neg})
	checks["aggregate that cancels"] = err
	for name, err := range checks {
		if !errors.Is(err, ErrIdentityPublicKey) {
			t.Errorf("%s with the identity key: err = %v", name, err)
		}
	}
}

func TestUncompressedEncodingsRefused(t *testing.T) {
	sk := mustKey(t, 5)
	pk := sk.PublicKey()
	if _, err := PublicKeyFromBytes(pk.p.Bytes()); !errors.Is(err, ErrInvalidPublicKey) {
		t.Fatalf("uncompressed public key accepted: %v", err)
	}
	sig := sk.Sign([]byte("x"))
	if _, err := SignatureFromBytes(sig.p.Bytes()); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("uncompressed signature accepted: %v", err)
	}
	// Circl itself accepts the uncompressed form: the refusal is ours.
	var p bls.G1
	if p.SetBytes(pk.p.Bytes()) != nil {
		t.Fatal("circl refuses uncompressed points; this test no longer tests anything")
	}
}

func TestAggregateAndBatch(t *testing.T) {
	var pks []*PublicKey
	var sigs, oneMsgSigs []*Signature
	var msgs [][]byte
	for i := range 5 {
		sk := mustKey(t, byte(10+i))
		msg := []byte(fmt.Sprintf("message %d", i))
		pks, msgs = append(pks, sk.PublicKey()), append(msgs, msg)
		sigs = append(sigs, sk.Sign(msg))
		oneMsgSigs = append(oneMsgSigs, sk.Sign([]byte("common")))
	}
	agg, _ := Aggregate(sigs)
	if err := AggregateVerify(pks, msgs, agg); err != nil {
		t.Fatal(err)
	}
	if err := BatchVerify(pks, msgs, sigs); err != nil {
		t.Fatal(err)
	}
	common, _ := Aggregate(oneMsgSigs)
	if err := FastAggregateVerify(pks, []byte("common"), common); err != nil {
		t.Fatal(err)
	}
	// One signature swapped: every form notices.
	sigs[2], sigs[3] = sigs[3], sigs[2]
	if err := BatchVerify(pks, msgs, sigs); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("batch with swapped signatures: err = %v", err)
	}
	if err := FastAggregateVerify(pks[:4], []byte("common"), common); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("fast aggregate missing a signer: err = %v", err)
	}
	if _, err := Aggregate(nil); !errors.Is(err, ErrNothingToAggregate) {
		t.Fatalf("empty aggregate: err = %v", err)
	}
}

// A secret key prints as a placeholder under every verb and in slog.
func TestSecretKeyNeverPrinted(t *testing.T) {
	sk := mustKey(t, 6)
	secretHex := hex.EncodeToString(sk.Bytes())
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		fmt.Fprintf(&out, verb+"\n", sk)
	}
	fmt.Fprintf(&out, "%v\n", struct{ Key *SecretKey }{sk})
	slog.New(slog.NewJSONHandler(&out, nil)).Info("key", "sk", sk)
	slog.New(slog.NewTextHandler(&out, nil)).Info("key", "sk", sk)
	if strings.Contains(strings.ToLower(out.String()), secretHex[:16]) {
		t.Fatalf("secret key bytes in output:\n%s", out.String())
	}
}
