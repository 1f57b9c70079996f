package forward

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	pionice "github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// pionAPI is pion/webrtc on loopback only, AES-128-GCM, default codecs and interceptors; mux, when set, puts
// every PeerConnection of the API on one UDP port (as an SFU would).
func pionAPI(b *testing.B, mux net.PacketConn) *webrtc.API {
	lo := net.IPv4(127, 0, 0, 1)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(pionice.MulticastDNSModeDisabled)
	se.SetSRTPProtectionProfiles(piondtls.SRTP_AEAD_AES_128_GCM)
	if mux != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, mux))
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		b.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir))
}

// connect runs a non-trickle offer/answer between two PeerConnections; serverSide runs the answerer's or
// offerer's calls that belong to the server under the server label.
func negotiate(b *testing.B, offerer, answerer *webrtc.PeerConnection, offerSide, answerSide func(func())) {
	var offer, answer webrtc.SessionDescription
	offerSide(func() {
		o, err := offerer.CreateOffer(nil)
		if err != nil {
			b.Fatal(err)
		}
		done := webrtc.GatheringCompletePromise(offerer)
		if err := offerer.SetLocalDescription(o); err != nil {
			b.Fatal(err)
		}
		<-done
		offer = *offerer.LocalDescription()
	})
	answerSide(func() {
		if err := answerer.SetRemoteDescription(offer); err != nil {
			b.Fatal(err)
		}
		a, err := answerer.CreateAnswer(nil)
		if err != nil {
			b.Fatal(err)
		}
		done := webrtc.GatheringCompletePromise(answerer)
		if err := answerer.SetLocalDescription(a); err != nil {
			b.Fatal(err)
		}
		<-done
		answer = *answerer.LocalDescription()
	})
	offerSide(func() {
		if err := offerer.SetRemoteDescription(answer); err != nil {
			b.Fatal(err)
		}
	})
}

// runBaseline is the same fan-out as a pion/webrtc SFU: a pion publisher → a pion server PeerConnection whose
// OnTrack loop does TrackRemote.Read → TrackLocalStaticRTP.Write → N server PeerConnections → N pion players
// that count what they read. All server PeerConnections share one UDP port (NewICEUDPMux).
func runBaseline(b *testing.B, subs int) {
	fl := newFlow(subs)
	client := pionAPI(b, nil)
	var server *webrtc.API
	var srvConn *net.UDPConn
	var sfuTrack *webrtc.TrackLocalStaticRTP
	var pcs []*webrtc.PeerConnection
	defer func() {
		for _, pc := range pcs {
			_ = pc.Close()
		}
	}()
	inServer := func(f func()) { asServer(func(context.Context) { f() }) }
	inClient := func(f func()) { f() }
	vp8Cap := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	inServer(func() {
		srvConn = listenUDP(b)
		server = pionAPI(b, srvConn)
		var err error
		if sfuTrack, err = webrtc.NewTrackLocalStaticRTP(vp8Cap, "video", "sfu"); err != nil {
			b.Fatal(err)
		}
	})

	// Publisher → server.
	pubPC, err := client.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	pcs = append(pcs, pubPC)
	pubTrack, err := webrtc.NewTrackLocalStaticRTP(vp8Cap, "video", "pub")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pubPC.AddTrack(pubTrack); err != nil {
		b.Fatal(err)
	}
	var srvPub *webrtc.PeerConnection
	inServer(func() {
		if srvPub, err = server.NewPeerConnection(webrtc.Configuration{}); err != nil {
			b.Fatal(err)
		}
		srvPub.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
			go func() {
				for {
					if _, _, err := rcv.ReadRTCP(); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				if _, err := sfuTrack.Write(buf[:n]); err != nil {
					return
				}
			}
		})
	})
	pcs = append(pcs, srvPub)
	negotiate(b, pubPC, srvPub, inClient, inServer)

	// Server → players.
	var connected sync.WaitGroup
	for range subs {
		var srvSub *webrtc.PeerConnection
		inServer(func() {
			if srvSub, err = server.NewPeerConnection(webrtc.Configuration{}); err != nil {
				b.Fatal(err)
			}
			sender, err := srvSub.AddTrack(sfuTrack)
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				for {
					if _, _, err := sender.ReadRTCP(); err != nil {
						return
					}
				}
			}()
		})
		pcs = append(pcs, srvSub)
		player, err := client.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		pcs = append(pcs, player)
		connected.Add(1)
		var once sync.Once
		player.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			once.Do(connected.Done)
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				fl.received(1)
			}
		})
		negotiate(b, srvSub, player, inServer, inClient)
	}

	// Warm up until every player has its track (pion players see a track at its first packet).
	pub := newPublisher(b, netip.AddrPort{})
	// pion's publisher adds its own header extensions: give it the payload without ours.
	var pkt rtp.Packet
	sendPion := func() {
		raw := pub.packet()
		if err := pkt.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		pkt.Header.Extension, pkt.Header.Extensions = false, pkt.Header.Extensions[:0]
		if err := pubTrack.WriteRTP(&pkt); err != nil {
			b.Fatal(err)
		}
	}
	all := make(chan struct{})
	go func() { connected.Wait(); close(all) }()
	deadline := time.After(time.Duration(30+subs/10) * time.Second)
warm:
	for {
		sendPion()
		select {
		case <-all:
			break warm
		case <-deadline:
			b.Fatal("players did not all get the track")
		case <-time.After(20 * time.Millisecond):
		}
	}
	fl.drain(1 << 62) // settle: wait until nothing arrives for a second
	fl.recv.Store(0)
	measure(b, subs, sendPion, fl)
}

// BenchmarkBaseline is the pion/webrtc TrackLocalStaticRTP fan-out (1000 players only with BENCH_PION_1000=1:
// setting up 1000 pion PeerConnections on a 2-core machine takes minutes).
func BenchmarkBaseline(b *testing.B) {
	for _, n := range subCounts {
		if n == 1000 && os.Getenv("BENCH_PION_1000") == "" {
			continue
		}
		b.Run(subName(n), func(b *testing.B) { runBaseline(b, n) })
	}
}
