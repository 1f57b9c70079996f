package ice

import (
	"log/slog"
	"net"
	"syscall"
)

// setBuffers raises SO_RCVBUF/SO_SNDBUF, with the FORCE variants first so that root may exceed
// net.core.rmem_max/wmem_max; without the privilege it falls back to the plain options silently.
func setBuffers(conn *net.UDPConn, rcv, snd int, log *slog.Logger) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	set := func(force, plain, n int) {
		if n <= 0 {
			return
		}
		var serr error
		_ = raw.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, force, n); serr != nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, plain, n)
			}
		})
		if serr != nil {
			log.Warn("socket buffer", "size", n, "err", serr)
		}
	}
	set(syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF, rcv)
	set(syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF, snd)
}
