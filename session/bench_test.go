package session

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/srtp"
)

type countSink struct{ rtp, rtcp int }

func (k *countSink) HandleRTP(*packet.Buffer) { k.rtp++ }
func (k *countSink) HandleRTCP([]byte)        { k.rtcp++ }

var benchKey = bytes.Repeat([]byte{7}, 16)

// benchSalt is a master salt of the profile's length: 12 bytes for AEAD GCM, 14 for AES-CM.
func benchSalt(profile uint16) []byte {
	if profile == dtls.ProfileAES128CMHMACSHA180 {
		return bytes.Repeat([]byte{9}, 14)
	}
	return bytes.Repeat([]byte{9}, 12)
}

// keyedSession is a Session with SRTP contexts installed from fixed keys (no ICE, no DTLS), and the
// sender's RTP Encrypter that matches its Decrypter.
func keyedSession(tb testing.TB, profile uint16) (*Session, *srtp.Encrypter) {
	tb.Helper()
	senderRTP, _, _, err := srtp.NewPairFromKeys(profile, benchKey, benchSalt(profile), benchKey, benchSalt(profile))
	if err != nil {
		tb.Fatal(err)
	}
	s := &Session{}
	rekey(tb, s, profile)
	return s, senderRTP
}

func rekey(tb testing.TB, s *Session, profile uint16) {
	enc, _, dec, err := srtp.NewPairFromKeys(profile, benchKey, benchSalt(profile), benchKey, benchSalt(profile))
	if err != nil {
		tb.Fatal(err)
	}
	s.keys.Store(&keys{rtpEnc: enc, dec: dec})
}

// sealed encrypts n RTP packets of 1228 bytes (12-byte header, 16-byte extension block, 1200-byte payload) with
// consecutive sequence numbers.
func sealed(tb testing.TB, enc *srtp.Encrypter, n int) [][]byte {
	tb.Helper()
	out := make([][]byte, n)
	var h rtp.Header
	for i := range out {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 0xabc}, Payload: make([]byte, 1200)}
		pkt.Header.SetExtension(3, []byte{1, 2, 3})
		pkt.Header.SetExtension(5, []byte{byte(i >> 8), byte(i)}) // transport-wide sequence number
		pkt.Header.SetExtension(4, []byte{'0'})
		raw, err := pkt.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		b, err := enc.EncryptRTP(append(make([]byte, 0, len(raw)+16), raw...), &h)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func TestHandleSRTP(t *testing.T) {
	s, enc := keyedSession(t, dtls.ProfileAEADAES128GCM)
	k := &countSink{}
	s.SetSink(k)
	pkts := sealed(t, enc, 2)
	from := netip.MustParseAddrPort("127.0.0.1:9")
	p := packet.Get()
	defer p.Release()
	p.SetLen(copy(p.ReadSlice(), pkts[0]))
	s.HandleSRTP(p, from)
	if k.rtp != 1 || p.Len() != len(pkts[0])-16 || p.Header.SSRC != 0xabc || len(p.Header.Extensions) != 3 {
		t.Fatalf("rtp %d len %d hdr %+v", k.rtp, p.Len(), p.Header)
	}
	// Replayed and tampered packets are counted, not delivered.
	p.SetLen(copy(p.ReadSlice(), pkts[0]))
	s.HandleSRTP(p, from)
	p.SetLen(copy(p.ReadSlice(), pkts[1]))
	p.ReadSlice()[100] ^= 1
	s.HandleSRTP(p, from)
	if k.rtp != 1 || s.Stats().DecryptFailures != 2 {
		t.Fatalf("rtp %d stats %+v", k.rtp, s.Stats())
	}
	// Nothing is decrypted before the keys exist.
	var fresh Session
	fresh.HandleSRTP(p, from)
	if fresh.Stats().DroppedNotReady != 1 {
		t.Fatal("not counted")
	}
}

// BenchmarkHandleSRTP is the receive path of a session: in-place decryption of a 1228-byte RTP packet (with
// replay protection) into p, header into p.Header, hand-off to the sink. The copy of the ciphertext into p stands
// for the socket read.
func BenchmarkHandleSRTP(b *testing.B) {
	for _, tc := range []struct {
		name    string
		profile uint16
		twcc    bool
	}{
		{"AES128GCM", dtls.ProfileAEADAES128GCM, false},
		{"AES128GCM+TWCC", dtls.ProfileAEADAES128GCM, true},
		{"AES128CM_HMAC80", dtls.ProfileAES128CMHMACSHA180, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, enc := keyedSession(b, tc.profile)
			if tc.twcc {
				s.EnableTWCC(5, 1) // records; no feedback loop on a session that never started
			}
			k := &countSink{}
			s.SetSink(k)
			const n = 4096 // a window of fresh sequence numbers; the replay window forbids reusing one
			pkts := sealed(b, enc, n)
			from := netip.MustParseAddrPort("127.0.0.1:9")
			p := packet.Get()
			defer p.Release()
			b.SetBytes(int64(len(pkts[0])))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%n == 0 && i > 0 {
					b.StopTimer()
					rekey(b, s, tc.profile)
					b.StartTimer()
				}
				p.SetLen(copy(p.ReadSlice(), pkts[i%n]))
				s.HandleSRTP(p, from)
			}
			b.StopTimer()
			if k.rtp != b.N {
				b.Fatalf("%d of %d delivered (%+v)", k.rtp, b.N, s.Stats())
			}
			if t := s.twcc.Load(); tc.twcc && (t == nil || len(t.rec.Feedback()) == 0) {
				b.Fatal("nothing recorded")
			}
		})
	}
}

func TestHandleSRTCP(t *testing.T) {
	s, _ := keyedSession(t, dtls.ProfileAEADAES128GCM)
	_, senderRTCP, _, err := srtp.NewPairFromKeys(dtls.ProfileAEADAES128GCM, benchKey, benchSalt(dtls.ProfileAEADAES128GCM), benchKey, benchSalt(dtls.ProfileAEADAES128GCM))
	if err != nil {
		t.Fatal(err)
	}
	sink := newChanSink()
	s.SetSink(sink)
	plain := []byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0xa, 0xbc} // PLI
	sealed, err := senderRTCP.EncryptRTCP(make([]byte, 0, 64), plain)
	if err != nil {
		t.Fatal(err)
	}
	p := packet.Get()
	defer p.Release()
	p.SetLen(copy(p.ReadSlice(), sealed))
	s.HandleSRTCP(p, netip.MustParseAddrPort("127.0.0.1:9"))
	select {
	case got := <-sink.rtcp:
		if !bytes.Equal(got, plain) {
			t.Fatalf("got %x", got)
		}
	default:
		t.Fatal("no RTCP")
	}
	p.SetLen(copy(p.ReadSlice(), sealed)) // replay
	s.HandleSRTCP(p, netip.MustParseAddrPort("127.0.0.1:9"))
	if st := s.Stats(); st.RTCPIn != 1 || st.DecryptFailures != 1 {
		t.Fatalf("%+v", st)
	}
}
