//go:build !linux

package ice

import (
	"log/slog"
	"net"
)

func setBuffers(conn *net.UDPConn, rcv, snd int, log *slog.Logger) {
	if rcv > 0 {
		if err := conn.SetReadBuffer(rcv); err != nil {
			log.Warn("socket read buffer", "size", rcv, "err", err)
		}
	}
	if snd > 0 {
		if err := conn.SetWriteBuffer(snd); err != nil {
			log.Warn("socket write buffer", "size", snd, "err", err)
		}
	}
}
