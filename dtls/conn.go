package dtls

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	piondtls "github.com/pion/dtls/v3"
)

// maxReadErrors bounds consecutive non-terminal read errors before the
// association is considered broken.
const maxReadErrors = 64

// ErrPeerClosed is what Conn.Err reports when the peer ended the association
// (close_notify or a fatal alert) or the underlying PacketConn was closed.
var ErrPeerClosed = errors.New("dtls: association closed by peer")

// Conn is an established DTLS association. After the handshake WebRTC media
// carries no DTLS application data, so a goroutine started by Handshake reads
// (and discards, counting) records until the association ends; Done is closed
// then. Close sends close_notify and closes the PacketConn given to Handshake.
type Conn struct {
	dc   *piondtls.Conn
	log  *slog.Logger
	done chan struct{}

	closeOnce   sync.Once
	closedLocal atomic.Bool
	err         atomic.Pointer[error]
	discarded   atomic.Uint64
}

func newConn(dc *piondtls.Conn, log *slog.Logger) *Conn {
	c := &Conn{dc: dc, log: log, done: make(chan struct{})}
	go c.readLoop()

	return c
}

// readBufferSize is the read loop's buffer. WebRTC media carries no DTLS application data, so it is small (it
// sits on the goroutine's stack, which an 8 KB buffer would double): a larger record is discarded all the same,
// pion reporting it as a temporary "buffer too small" error.
const readBufferSize = 256

func (c *Conn) readLoop() {
	defer close(c.done)
	var buf [readBufferSize]byte
	errs := 0
	for {
		n, err := c.dc.Read(buf[:])
		if err == nil {
			errs = 0
			c.discarded.Add(uint64(n))

			continue
		}
		if te := (*piondtls.TemporaryError)(nil); errors.As(err, &te) && !c.closedLocal.Load() {
			errs = 0 // a record larger than buf, consumed and dropped

			continue
		}
		terminal := errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
			errors.Is(err, piondtls.ErrConnClosed)
		errs++
		if !terminal && errs < maxReadErrors {
			c.log.Debug("dtls read error", "err", err)

			continue
		}
		if !c.closedLocal.Load() {
			e := fmt.Errorf("%w: %w", ErrPeerClosed, err)
			c.err.Store(&e)
			c.log.Debug("dtls association ended", "err", err)
		}

		return
	}
}

// Done is closed when the association has ended: the peer sent close_notify
// or a fatal alert, the PacketConn was closed, or Close was called.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err reports why the association ended (wrapping ErrPeerClosed), or nil if
// it is still up or was ended by Close.
func (c *Conn) Err() error {
	if p := c.err.Load(); p != nil {
		return *p
	}

	return nil
}

// Close sends close_notify, closes the underlying PacketConn and waits for
// the read goroutine to finish. It is idempotent.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closedLocal.Store(true)
		err = c.dc.Close()
		<-c.done
	})
	if err != nil {
		return fmt.Errorf("dtls: close: %w", err)
	}

	return nil
}

// DiscardedBytes counts application data received and discarded.
func (c *Conn) DiscardedBytes() uint64 { return c.discarded.Load() }

// RemoteAddr is the peer address given to Handshake.
func (c *Conn) RemoteAddr() net.Addr { return c.dc.RemoteAddr() }

// LocalAddr is the local address of the PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.dc.LocalAddr() }
