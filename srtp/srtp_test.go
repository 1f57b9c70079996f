package srtp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsrtp "github.com/pion/srtp/v3"

	"github.com/rtcrelay/rtcrelay/dtls"
)

var profiles = []struct {
	name    string
	id      uint16
	keyLen  int
	saltLen int
	rtpO    int
	rtcpO   int
}{
	{"AEAD_AES_128_GCM", dtls.ProfileAEADAES128GCM, 16, 12, 16, 20},
	{"AES128_CM_HMAC_SHA1_80", dtls.ProfileAES128CMHMACSHA180, 16, 14, 10, 14},
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}

	return b
}

// keysFor returns the two sides of a session: a's local keys are b's remote.
func keysFor(t testing.TB, profile uint16, keyLen, saltLen int) (a, b dtls.Keys) {
	t.Helper()
	k1, s1, k2, s2 := randBytes(t, keyLen), randBytes(t, saltLen), randBytes(t, keyLen), randBytes(t, saltLen)
	a = dtls.Keys{Profile: profile, LocalKey: k1, LocalSalt: s1, RemoteKey: k2, RemoteSalt: s2}
	b = dtls.Keys{Profile: profile, LocalKey: k2, LocalSalt: s2, RemoteKey: k1, RemoteSalt: s1}

	return a, b
}

// rtpPacket marshals an RTP packet with a one-byte header extension into a
// buffer with room for the tag.
func rtpPacket(t testing.TB, seq uint16, payloadLen int) []byte {
	t.Helper()
	p := rtp.Packet{
		Header: rtp.Header{
			Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 90000 + uint32(seq)*3000, SSRC: 0x11223344,
			Marker: seq%2 == 0,
		},
		Payload: bytes.Repeat([]byte{byte(seq), 0xAB}, payloadLen/2),
	}
	if err := p.Header.SetExtension(3, []byte{0x01, 0x02}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(raw), len(raw)+MaxRTPOverhead)
	copy(buf, raw)

	return buf
}

func rtcpPacket(t testing.TB) []byte {
	t.Helper()
	raw, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 0xCAFE, Reports: []rtcp.ReceptionReport{{SSRC: 0x11223344, LastSequenceNumber: 77}}},
		&rtcp.PictureLossIndication{SenderSSRC: 0xCAFE, MediaSSRC: 0x11223344},
	})
	if err != nil {
		t.Fatal(err)
	}

	return raw
}

func TestRTPRoundTrip(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, b := keysFor(t, p.id, p.keyLen, p.saltLen)
			enc, _, _, err := NewPair(a)
			if err != nil {
				t.Fatal(err)
			}
			_, _, dec, err := NewPair(b)
			if err != nil {
				t.Fatal(err)
			}
			if enc.RTPOverhead() != p.rtpO || enc.RTCPOverhead() != p.rtcpO || enc.Profile() != p.id {
				t.Fatalf("overheads %d/%d", enc.RTPOverhead(), enc.RTCPOverhead())
			}
			var eh, dh rtp.Header
			for seq := uint16(65530); seq != 10; seq++ { // across a sequence wrap (ROC)
				buf := rtpPacket(t, seq, 1200)
				plain := bytes.Clone(buf)
				out, err := enc.EncryptRTP(buf, &eh)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) != len(plain)+p.rtpO || &out[0] != &buf[0] {
					t.Fatalf("EncryptRTP len %d (want %d) or not in place", len(out), len(plain)+p.rtpO)
				}
				if bytes.Equal(out[len(out)-p.rtpO-100:len(out)-p.rtpO], plain[len(plain)-100:]) {
					t.Fatal("payload not encrypted")
				}
				got, err := dec.DecryptRTP(out, &dh)
				if err != nil {
					t.Fatalf("seq %d: %v", seq, err)
				}
				if !bytes.Equal(got, plain) || &got[0] != &buf[0] {
					t.Fatal("DecryptRTP result differs or not in place")
				}
				if dh.SequenceNumber != seq || dh.SSRC != 0x11223344 || !bytes.Equal(dh.GetExtension(3), []byte{1, 2}) {
					t.Fatalf("header %+v", dh)
				}
			}
		})
	}
}

func TestRTPTamperAndReplay(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, b := keysFor(t, p.id, p.keyLen, p.saltLen)
			enc, _, _, _ := NewPair(a)
			_, _, dec, _ := NewPair(b)

			for i, where := range []string{"header", "payload", "tag"} {
				buf, err := enc.EncryptRTP(rtpPacket(t, uint16(100+i), 200), nil)
				if err != nil {
					t.Fatal(err)
				}
				switch where {
				case "header":
					buf[1] ^= 0x01 // payload type
				case "payload":
					buf[40] ^= 0x80
				case "tag":
					buf[len(buf)-1] ^= 0x01
				}
				if _, err := dec.DecryptRTP(buf, nil); !errors.Is(err, ErrAuth) {
					t.Fatalf("tampered %s: err = %v, want ErrAuth", where, err)
				}
			}

			// A forged packet must not have consumed its index: the genuine one still decrypts.
			pkt, _ := enc.EncryptRTP(rtpPacket(t, 200, 200), nil)
			forged := bytes.Clone(pkt)
			forged[len(forged)-1] ^= 0xFF
			if _, err := dec.DecryptRTP(forged, nil); !errors.Is(err, ErrAuth) {
				t.Fatalf("forged: %v", err)
			}
			replay := bytes.Clone(pkt)
			if _, err := dec.DecryptRTP(pkt, nil); err != nil {
				t.Fatalf("genuine after forged: %v", err)
			}
			if _, err := dec.DecryptRTP(replay, nil); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay: err = %v, want ErrReplay", err)
			}

			// Older than the 64-packet window.
			old, _ := enc.EncryptRTP(rtpPacket(t, 201, 200), nil)
			for seq := uint16(202); seq < 202+ReplayWindow+2; seq++ {
				buf, _ := enc.EncryptRTP(rtpPacket(t, seq, 20), nil)
				if _, err := dec.DecryptRTP(buf, nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := dec.DecryptRTP(old, nil); !errors.Is(err, ErrReplay) {
				t.Fatalf("too old: err = %v, want ErrReplay", err)
			}
		})
	}
}

func TestRTCPRoundTripTamperReplay(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, b := keysFor(t, p.id, p.keyLen, p.saltLen)
			_, enc, _, _ := NewPair(a)
			_, _, dec, _ := NewPair(b)
			plain := rtcpPacket(t)

			// Into a separate buffer.
			dst := make([]byte, 0, 1500)
			out, err := enc.EncryptRTCP(dst, plain)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(plain)+p.rtcpO {
				t.Fatalf("len %d, want %d", len(out), len(plain)+p.rtcpO)
			}
			replay := bytes.Clone(out)
			got, err := dec.DecryptRTCP(out)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("DecryptRTCP = %x, %v", got, err)
			}
			pkts, err := rtcp.Unmarshal(got)
			if err != nil || len(pkts) != 2 {
				t.Fatalf("unmarshal: %v %v", pkts, err)
			}
			if _, err := dec.DecryptRTCP(replay); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay: %v", err)
			}

			// In place.
			buf := make([]byte, len(plain), len(plain)+MaxRTCPOverhead)
			copy(buf, plain)
			out, err = enc.EncryptRTCP(buf, buf)
			if err != nil || &out[0] != &buf[0] {
				t.Fatalf("in place: %v", err)
			}
			tampered := bytes.Clone(out)
			tampered[10] ^= 1
			if _, err := dec.DecryptRTCP(tampered); !errors.Is(err, ErrAuth) {
				t.Fatalf("tampered: %v", err)
			}
			if got, err := dec.DecryptRTCP(out); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("in-place round trip: %v", err)
			}
		})
	}
}

func TestBufferChecks(t *testing.T) {
	a, _ := keysFor(t, dtls.ProfileAEADAES128GCM, 16, 12)
	enc, rtcpEnc, dec, err := NewPair(a)
	if err != nil {
		t.Fatal(err)
	}
	p := rtpPacket(t, 1, 100)
	if _, err := enc.EncryptRTP(p[:len(p):len(p)+15], nil); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short rtp: %v", err)
	}
	plain := rtcpPacket(t)
	if _, err := rtcpEnc.EncryptRTCP(make([]byte, 0, len(plain)+19), plain); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short rtcp: %v", err)
	}
	big := make([]byte, 200)
	copy(big, plain)
	if _, err := rtcpEnc.EncryptRTCP(big[4:4], big[:len(plain)]); !errors.Is(err, ErrOverlap) {
		t.Fatalf("overlap: %v", err)
	}
	for _, in := range [][]byte{nil, {0x80}, make([]byte, 12), make([]byte, 20), {0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0xFF, 0xFF}} {
		if _, err := dec.DecryptRTP(bytes.Clone(in), nil); err == nil {
			t.Errorf("DecryptRTP(%x) succeeded", in)
		}
		if _, err := dec.DecryptRTCP(bytes.Clone(in)); err == nil {
			t.Errorf("DecryptRTCP(%x) succeeded", in)
		}
	}
	if _, err := enc.EncryptRTP(make([]byte, 3, 100), nil); err == nil {
		t.Error("EncryptRTP of 3 bytes succeeded")
	}
	if _, err := rtcpEnc.EncryptRTCP(make([]byte, 0, 100), []byte{0x80, 200}); err == nil {
		t.Error("EncryptRTCP of 2 bytes succeeded")
	}
}

func TestBadKeys(t *testing.T) {
	for _, tc := range []struct {
		name      string
		profile   uint16
		key, salt int
	}{
		{"unknown profile", 0x00FF, 16, 12},
		{"zero profile", 0, 16, 12},
		{"short key", dtls.ProfileAEADAES128GCM, 15, 12},
		{"long salt", dtls.ProfileAEADAES128GCM, 16, 14},
		{"cm short salt", dtls.ProfileAES128CMHMACSHA180, 16, 12},
	} {
		if _, _, _, err := NewPairFromKeys(tc.profile, make([]byte, tc.key), make([]byte, tc.salt),
			make([]byte, tc.key), make([]byte, tc.salt)); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, _, err := Overhead(0x00FF); err == nil {
		t.Error("Overhead of unknown profile")
	}
}

// TestInteropPionContext cross-checks against independent pion Contexts in
// both directions.
func TestInteropPionContext(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, b := keysFor(t, p.id, p.keyLen, p.saltLen)
			enc, rtcpEnc, dec, err := NewPair(a)
			if err != nil {
				t.Fatal(err)
			}
			prof := pionsrtp.ProtectionProfile(p.id)
			peerDec, err := pionsrtp.CreateContext(b.RemoteKey, b.RemoteSalt, prof, pionsrtp.SRTPReplayProtection(64))
			if err != nil {
				t.Fatal(err)
			}
			peerEnc, err := pionsrtp.CreateContext(b.LocalKey, b.LocalSalt, prof)
			if err != nil {
				t.Fatal(err)
			}

			for seq := uint16(1); seq < 20; seq++ {
				// Ours → pion.
				buf := rtpPacket(t, seq, 1000)
				plain := bytes.Clone(buf)
				out, err := enc.EncryptRTP(buf, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := peerDec.DecryptRTP(nil, out, nil)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("pion could not decrypt ours: %v", err)
				}
				// pion → ours.
				theirs, err := peerEnc.EncryptRTP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err = dec.DecryptRTP(theirs, nil)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("we could not decrypt pion's: %v", err)
				}
			}

			plain := rtcpPacket(t)
			out, err := rtcpEnc.EncryptRTCP(make([]byte, 0, 200), plain)
			if err != nil {
				t.Fatal(err)
			}
			got, err := peerDec.DecryptRTCP(nil, out, nil)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("pion could not decrypt our RTCP: %v", err)
			}
			theirs, err := peerEnc.EncryptRTCP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err = dec.DecryptRTCP(theirs)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("we could not decrypt pion's RTCP: %v", err)
			}
		})
	}
}

func FuzzDecrypt(f *testing.F) {
	a, _ := keysFor(f, dtls.ProfileAEADAES128GCM, 16, 12)
	enc, rtcpEnc, _, _ := NewPair(a)
	pkt, _ := enc.EncryptRTP(rtpPacket(f, 1, 64), nil)
	f.Add(pkt)
	rt, _ := rtcpEnc.EncryptRTCP(make([]byte, 0, 200), rtcpPacket(f))
	f.Add(rt)
	f.Add([]byte{0x80, 0xC8, 0, 1})
	_, _, dec, _ := NewPairFromKeys(a.Profile, a.RemoteKey, a.RemoteSalt, a.LocalKey, a.LocalSalt)
	_, _, decCM, _ := NewPairFromKeys(dtls.ProfileAES128CMHMACSHA180, a.RemoteKey, make([]byte, 14), a.LocalKey, make([]byte, 14))
	var h rtp.Header
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, d := range []*Decrypter{dec, decCM} {
			_, _ = d.DecryptRTP(bytes.Clone(in), &h)
			_, _ = d.DecryptRTCP(bytes.Clone(in))
		}
	})
}

// TestPairEncryptersConcurrent: the RTP and RTCP Encrypters of a pair share a pion Context; used from two
// goroutines at once (the session's writer and its RTCP path) they must neither race nor corrupt each other.
func TestPairEncryptersConcurrent(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, b := keysFor(t, p.id, p.keyLen, p.saltLen)
			enc, rtcpEnc, _, err := NewPair(a)
			if err != nil {
				t.Fatal(err)
			}
			_, _, dec, err := NewPair(b)
			if err != nil {
				t.Fatal(err)
			}
			const n = 300
			rtps, rtcps := make([][]byte, n), make([][]byte, n)
			plains := make([][]byte, n)
			var wg sync.WaitGroup
			wg.Go(func() {
				var h rtp.Header
				for i := range n {
					buf := rtpPacket(t, uint16(i), 1000)
					plains[i] = bytes.Clone(buf)
					out, err := enc.EncryptRTP(buf, &h)
					if err != nil {
						t.Error(err)
						return
					}
					rtps[i] = out
				}
			})
			plainRTCP := rtcpPacket(t)
			wg.Go(func() {
				for i := range n {
					out, err := rtcpEnc.EncryptRTCP(make([]byte, 0, len(plainRTCP)+MaxRTCPOverhead), plainRTCP)
					if err != nil {
						t.Error(err)
						return
					}
					rtcps[i] = out
				}
			})
			wg.Wait()
			for i := range n {
				got, err := dec.DecryptRTP(rtps[i], nil)
				if err != nil || !bytes.Equal(got, plains[i]) {
					t.Fatalf("RTP %d: %v", i, err)
				}
				gotRTCP, err := dec.DecryptRTCP(rtcps[i])
				if err != nil || !bytes.Equal(gotRTCP, plainRTCP) {
					t.Fatalf("RTCP %d: %v", i, err)
				}
			}
		})
	}
}

// TestPrime: Prime makes the SSRC's state (the context knows its rollover counter before any packet), and an
// encrypter primed before its first packet sends exactly what an unprimed one sends, from any first sequence
// number and across the rollover.
func TestPrime(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			a, _ := keysFor(t, p.id, p.keyLen, p.saltLen)
			for _, first := range []uint16{0, 1, 40000, 65534} {
				plainEnc, _, _, err := NewPair(a)
				if err != nil {
					t.Fatal(err)
				}
				primed, _, _, err := NewPair(a)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := primed.ctx.ROC(0x11223344); ok {
					t.Fatal("state before Prime")
				}
				primed.Prime(0x11223344)
				if roc, ok := primed.ctx.ROC(0x11223344); !ok || roc != 0 {
					t.Fatalf("after Prime: state %v, rollover counter %d", ok, roc)
				}
				var h rtp.Header
				for i := range 5 {
					seq := first + uint16(i)
					x, err := plainEnc.EncryptRTP(rtpPacket(t, seq, 200), &h)
					if err != nil {
						t.Fatal(err)
					}
					y, err := primed.EncryptRTP(rtpPacket(t, seq, 200), &h)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(x, y) {
						t.Fatalf("first %d, seq %d: primed output differs", first, seq)
					}
				}
			}
		})
	}
}
