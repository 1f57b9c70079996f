package forwarder

import (
	"testing"

	"github.com/pion/rtcp"
)

// FuzzRTCP feeds arbitrary (decrypted) RTCP to both of the forwarder's RTCP entry points — a player's
// (NACK, PLI, FIR, RR from the network) and the publisher's (SR, SDES, BYE) — with media flowing: nothing may
// panic, and the packet buffers come back.
func FuzzRTCP(f *testing.F) {
	for _, p := range []rtcp.Packet{
		&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{1, 2, 40000})},
		&rtcp.PictureLossIndication{MediaSSRC: 1},
		&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 1}}},
		&rtcp.ReceiverReport{SSRC: 9, Reports: []rtcp.ReceptionReport{{SSRC: 1, FractionLost: 20, TotalLost: 5, Jitter: 9, LastSenderReport: 7, Delay: 3}}},
		&rtcp.SenderReport{SSRC: pubVideoSSRC, NTPTime: 1 << 40, RTPTime: 5, PacketCount: 3},
		&rtcp.Goodbye{Sources: []uint32{pubVideoSSRC}},
	} {
		b, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x81, 0xcd, 0xff, 0xff, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewRegistry(nil)
		st, err := r.Publish("s", pubTracks(true), &fakeUp{})
		if err != nil {
			t.Fatal(err)
		}
		fd := &feeder{tb: t, st: st}
		pl, err := st.Subscribe(&fakeDown{}, playTracks(1))
		if err != nil {
			t.Fatal(err)
		}
		for k := range uint16(8) {
			fd.video(100+k, k == 0)
		}
		pl.HandleRTCP(b)
		st.HandleRTCP(b)
		fd.audio(1)
		pl.Close()
		st.Close()
		r.Close()
		if n := fd.leaks(); n != 0 {
			t.Fatalf("%d packet buffers leaked", n)
		}
	})
}
