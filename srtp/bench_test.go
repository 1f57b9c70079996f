package srtp

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// Run: go test -run '^$' -bench . -benchmem ./srtp/

const benchPayload = 1200

// BenchmarkEncryptRTP protects a 1200-byte-payload RTP packet in place.
// Plaintexts are prepared in batches outside the timer, like the decrypt
// benchmark, so that the two are comparable.
func BenchmarkEncryptRTP(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			a, _ := keysFor(b, p.id, p.keyLen, p.saltLen)
			enc, _, _, err := NewPair(a)
			if err != nil {
				b.Fatal(err)
			}
			tmpl := rtpPacket(b, 0, benchPayload)
			n := len(tmpl)
			const batch = 1024
			pkts := make([][]byte, batch)
			for i := range pkts {
				pkts[i] = make([]byte, n, n+MaxRTPOverhead)
			}
			var h rtp.Header
			seq := uint16(0)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				for i := range pkts {
					seq++
					copy(pkts[i][:n], tmpl)
					binary.BigEndian.PutUint16(pkts[i][2:], seq)
				}
				b.StartTimer()
				for i := 0; i < batch && done < b.N; i++ {
					if _, err := enc.EncryptRTP(pkts[i][:n], &h); err != nil {
						b.Fatal(err)
					}
					done++
				}
			}
		})
	}
}

// BenchmarkDecryptRTP authenticates, replay-checks and decrypts a
// 1200-byte-payload SRTP packet in place. Packets are prepared in batches
// outside the timer, with consecutive sequence numbers.
func BenchmarkDecryptRTP(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			a, bk := keysFor(b, p.id, p.keyLen, p.saltLen)
			enc, _, _, _ := NewPair(a)
			_, _, dec, err := NewPair(bk)
			if err != nil {
				b.Fatal(err)
			}
			tmpl := rtpPacket(b, 0, benchPayload)
			n := len(tmpl)
			const batch = 1024
			pkts := make([][]byte, batch)
			for i := range pkts {
				pkts[i] = make([]byte, n, n+MaxRTPOverhead)
			}
			var eh, dh rtp.Header
			seq := uint16(0)
			fill := func() {
				for i := range pkts {
					seq++
					buf := pkts[i][:n]
					copy(buf, tmpl)
					binary.BigEndian.PutUint16(buf[2:], seq)
					out, err := enc.EncryptRTP(buf, &eh)
					if err != nil {
						b.Fatal(err)
					}
					pkts[i] = out
				}
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				fill()
				b.StartTimer()
				for i := 0; i < batch && done < b.N; i++ {
					if _, err := dec.DecryptRTP(pkts[i], &dh); err != nil {
						b.Fatal(err)
					}
					done++
				}
			}
		})
	}
}

// BenchmarkEncryptRTCP protects a compound RR+PLI in place.
func BenchmarkEncryptRTCP(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			a, _ := keysFor(b, p.id, p.keyLen, p.saltLen)
			_, enc, _, _ := NewPair(a)
			plain := rtcpPacket(b)
			n := len(plain)
			buf := make([]byte, n, n+MaxRTCPOverhead)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[:n], plain)
				if _, err := enc.EncryptRTCP(buf[:n], buf[:n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecryptRTCP authenticates, replay-checks and decrypts SRTCP in place.
func BenchmarkDecryptRTCP(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			a, bk := keysFor(b, p.id, p.keyLen, p.saltLen)
			_, enc, _, _ := NewPair(a)
			_, _, dec, _ := NewPair(bk)
			plain := rtcpPacket(b)
			n := len(plain)
			const batch = 1024
			pkts := make([][]byte, batch)
			for i := range pkts {
				pkts[i] = make([]byte, 0, n+MaxRTCPOverhead)
			}
			fill := func() {
				for i := range pkts {
					out, err := enc.EncryptRTCP(pkts[i][:0], plain)
					if err != nil {
						b.Fatal(err)
					}
					pkts[i] = out
				}
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				fill()
				b.StartTimer()
				for i := 0; i < batch && done < b.N; i++ {
					if _, err := dec.DecryptRTCP(pkts[i]); err != nil {
						b.Fatal(err)
					}
					done++
				}
			}
		})
	}
}
