package signaling

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/rtcrelay/rtcrelay/relayauth"
)

type readerSource = io.Reader

// frame is one queued outbound WebSocket frame.
type frame struct {
	op      ws.OpCode
	payload []byte
}

// conn is one browser WebSocket session: the handler goroutine reads, one
// writer goroutine owns the socket's write side and the ping ticker.
type conn struct {
	ctx    context.Context // ends with the session (teardown)
	cancel context.CancelCauseFunc
	srv    *Server
	nc     net.Conn
	br     io.Reader
	id     string
	remote string
	log    *slog.Logger
	// release gives back what ConnLimit gave this session (nil: nothing).
	release func()

	// The outbound queue: a slice that grows only while frames wait (most connections idle with none), bounded
	// by the server's QueueSize; wake (capacity 1) tells the writer there is something.
	outMu     sync.Mutex
	out       []frame
	wake      chan struct{}
	closeCh   chan struct{} // closed by close(): the writer sends closeMsg and ends
	closeOnce sync.Once
	closeMsg  []byte
	done      chan struct{} // closed when the writer has finished
	missed    atomic.Int32  // pings without a pong
	bad       int           // malformed, unknown or binary messages so far (reader goroutine only)
	abrupt    atomic.Bool   // close the socket without a close frame (the SDK then reports the session FAILED)

	created time.Time
	// guarded by srv.mu
	fields      map[string]json.RawMessage // the connection payload
	established bool
	connecting  bool               // the connect hook is running
	appKey      string             // the connection's appKey (defaultApp when it sent none)
	relay       *relayauth.Token   // the verified relay token (nil: an ordinary client); set before established
	streams     map[string]*stream // by mediaSessionId
}

func (c *conn) run() {
	defer c.srv.wg.Done()
	if c.release != nil {
		defer c.release()
	}
	hs := time.AfterFunc(c.srv.cfg.HandshakeTimeout, func() {
		c.srv.mu.Lock()
		late := !c.established && !c.connecting // a connect hook that is still deciding has its own timeout
		c.srv.mu.Unlock()
		if late {
			c.srv.handshakeTimeouts.Add(1)
			c.log.Info("no connection message in time: closing", "timeout", c.srv.cfg.HandshakeTimeout)
			c.close(ws.StatusPolicyViolation, "no connection message within "+c.srv.cfg.HandshakeTimeout.String())
		}
	})
	defer hs.Stop()
	go c.writeLoop()
	err := c.readLoop()
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Debug("websocket closed")
	default:
		c.log.Debug("websocket read ended", "err", err)
	}
	c.close(ws.StatusNormalClosure, "")
	c.teardown()
	<-c.done
}

// readLoop reads frames until the socket fails or a close frame arrives.
func (c *conn) readLoop() error {
	rd := &wsutil.Reader{
		Source:         c.br,
		State:          ws.StateServerSide,
		CheckUTF8:      true,
		MaxMessageSize: c.srv.cfg.MaxMessageSize,
		OnIntermediate: c.control,
	}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			if errors.Is(err, wsutil.ErrMessageTooLarge) || errors.Is(err, wsutil.ErrFrameTooLarge) {
				c.srv.oversized.Add(1)
				c.log.Error("oversized websocket message, closing", "length", hdr.Length, "limit", c.srv.cfg.MaxMessageSize)
				c.close(ws.StatusMessageTooBig, "message too big")
				return nil
			}
			if errors.Is(err, ws.ErrProtocolOpCodeReserved) || errors.Is(err, ws.ErrProtocolMaskRequired) ||
				errors.Is(err, ws.ErrProtocolControlPayloadOverflow) || errors.Is(err, ws.ErrProtocolControlNotFinal) ||
				errors.Is(err, ws.ErrProtocolNonZeroRsv) || errors.Is(err, ws.ErrProtocolContinuationUnexpected) ||
				errors.Is(err, ws.ErrProtocolContinuationExpected) {
				c.srv.malformed.Add(1)
				c.log.Error("websocket protocol error, closing", "err", err)
				c.close(ws.StatusProtocolError, "protocol error")
				return nil
			}
			return err
		}
		if hdr.OpCode.IsControl() {
			if err := c.control(hdr, rd); err != nil {
				return err
			}
			if hdr.OpCode == ws.OpClose {
				return nil
			}
			continue
		}
		payload, err := io.ReadAll(rd)
		if err != nil {
			if errors.Is(err, wsutil.ErrInvalidUTF8) {
				c.srv.malformed.Add(1)
				c.log.Error("text frame is not UTF-8, closing")
				c.close(ws.StatusInvalidFramePayloadData, "invalid UTF-8")
				return nil
			}
			if errors.Is(err, wsutil.ErrMessageTooLarge) {
				c.srv.oversized.Add(1)
				c.log.Error("oversized websocket message, closing", "limit", c.srv.cfg.MaxMessageSize)
				c.close(ws.StatusMessageTooBig, "message too big")
				return nil
			}
			return err
		}
		if hdr.OpCode == ws.OpBinary {
			c.srv.binary.Add(1)
			c.log.Info("binary frame", "length", len(payload))
			c.badMessage("", "Binary frames are not part of the protocol: send JSON text frames")
			continue
		}
		c.handle(payload)
	}
}

// control handles a ping, pong or close frame; body is the unmasked payload.
func (c *conn) control(hdr ws.Header, body io.Reader) error {
	p, err := io.ReadAll(io.LimitReader(body, ws.MaxControlFramePayloadSize))
	if err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		c.send(frame{ws.OpPong, p})
	case ws.OpPong:
		c.missed.Store(0)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		c.log.Debug("close frame", "code", code, "reason", reason)
		if code.Empty() {
			code = ws.StatusNormalClosure
		}
		if !code.IsProtocolDefined() && !code.IsApplicationSpec() && !code.IsPrivateSpec() {
			code = ws.StatusProtocolError
		}
		c.close(code, "")
	}
	return nil
}

// send queues a frame without blocking; a full queue means the client does
// not read, and the connection is closed.
func (c *conn) send(f frame) {
	select {
	case <-c.closeCh:
		return
	default:
	}
	c.outMu.Lock()
	full := len(c.out) >= c.srv.cfg.QueueSize
	if !full {
		c.out = append(c.out, f)
	}
	c.outMu.Unlock()
	if full {
		c.srv.overflows.Add(1)
		c.log.Error("outbound queue full, closing slow client", "queue", c.srv.cfg.QueueSize)
		c.close(ws.StatusPolicyViolation, "client too slow")
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// takeOut empties the outbound queue into batch (the writer's), which it returns.
func (c *conn) takeOut(batch []frame) []frame {
	c.outMu.Lock()
	batch = append(batch[:0], c.out...)
	clear(c.out)
	if cap(c.out) > idleQueueCap {
		c.out = nil // a burst is over: do not keep its backing array
	} else {
		c.out = c.out[:0]
	}
	c.outMu.Unlock()
	return batch
}

// idleQueueCap is the largest outbound queue (and writer batch) capacity a connection keeps between bursts.
const idleQueueCap = 4

// writerPool holds the writers' bufio.Writers between frames: an idle connection holds none.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// sendMsg encodes and queues a text message.
func (c *conn) sendMsg(name string, data ...any) {
	b, err := EncodeMessage(name, data...)
	if err != nil {
		c.log.Error("encode", "message", name, "err", err)
		return
	}
	c.send(frame{ws.OpText, b})
}

// close asks the writer to flush the queue, send a close frame and close the socket.
func (c *conn) close(code ws.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closeMsg = ws.NewCloseFrameBody(code, reason)
		close(c.closeCh)
	})
}

func (c *conn) writeLoop() {
	defer close(c.done)
	defer c.nc.Close()
	write := func(f frame) error {
		bw := writerPool.Get().(*bufio.Writer)
		bw.Reset(c.nc)
		defer func() {
			bw.Reset(nil)
			writerPool.Put(bw)
		}()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if err := ws.WriteFrame(bw, ws.NewFrame(f.op, true, f.payload)); err != nil {
			return err
		}
		return bw.Flush()
	}
	var batch []frame
	writeAll := func() error {
		batch = c.takeOut(batch)
		defer func() {
			clear(batch)
			if cap(batch) > idleQueueCap {
				batch = nil
			}
		}()
		for _, f := range batch {
			if err := write(f); err != nil {
				return err
			}
		}
		return nil
	}
	ping, _ := EncodeMessage(MsgPing)
	t := time.NewTicker(c.srv.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.wake:
			if err := writeAll(); err != nil {
				c.log.Debug("websocket write", "err", err)
				c.close(ws.StatusAbnormalClosure, "")
				return
			}
		case <-t.C:
			if int(c.missed.Load()) >= c.srv.cfg.MaxMissedPongs {
				c.srv.missedPong.Add(1)
				c.log.Info("client missed pongs, closing", "missed", c.missed.Load())
				c.close(ws.StatusGoingAway, "missed pongs")
				continue
			}
			c.missed.Add(1)
			if err := write(frame{ws.OpText, ping}); err != nil {
				c.close(ws.StatusAbnormalClosure, "")
				return
			}
		case <-c.closeCh:
			if writeAll() != nil {
				return
			}
			if c.abrupt.Load() {
				// A frame with RSV1 set (no extension was negotiated): the browser must fail the WebSocket
				// connection, which fires its error event, so the Web SDK reports the session FAILED.
				f := ws.NewFrame(ws.OpText, true, nil)
				f.Header.Rsv = ws.Rsv(true, false, false)
				bw := bufio.NewWriter(c.nc)
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
				if ws.WriteFrame(bw, f) == nil {
					_ = bw.Flush()
				}
				return
			}
			_ = write(frame{ws.OpClose, c.closeMsg})
			return
		}
	}
}

// abort sends what is queued, then a frame the client must reject and closes the socket without a close frame:
// the browser fails the WebSocket, so the Web SDK reports the session FAILED (a clean close would be DISCONNECTED).
func (c *conn) abort() {
	c.abrupt.Store(true)
	c.close(ws.StatusPolicyViolation, "")
}

// teardown ends every stream of this connection after its socket closed.
func (c *conn) teardown() {
	s := c.srv
	c.cancel(ErrSessionDisconnect)
	var cl closers
	s.mu.Lock()
	for _, st := range c.streams {
		s.endLocked(st, StatusFailed, InfoSessionDisconnect, ErrSessionDisconnect, false, &cl)
	}
	delete(s.conns, c.id)
	if c.established {
		c.notifyLocked("ConnectionStatusEvent", c.fields, map[string]any{"status": "DISCONNECTED"})
	}
	s.mu.Unlock()
	cl.run()
}

// notifyLocked sends an event to the Authorizer (if any): fields plus sessionId and the extra fields.
func (c *conn) notifyLocked(method string, fields map[string]json.RawMessage, extra map[string]any) {
	a := c.srv.cfg.Authorizer
	if a == nil || c.appKey == "" {
		return
	}
	a.Notify(c.appKey, method, hookBody(fields, c.id, extra))
}

// hookBody is a copy of fields with sessionId and extra set, for the Authorizer.
func hookBody(fields map[string]json.RawMessage, sessionID string, extra map[string]any) map[string]json.RawMessage {
	b := make(map[string]json.RawMessage, len(fields)+len(extra)+1)
	for k, v := range fields {
		b[k] = v
	}
	b["sessionId"], _ = json.Marshal(sessionID)
	for k, v := range extra {
		if raw, err := json.Marshal(v); err == nil {
			b[k] = raw
		}
	}
	return b
}

func (c *conn) infoLocked() ConnectionInfo {
	ci := ConnectionInfo{
		SessionID:   c.id,
		RemoteAddr:  c.remote,
		Established: c.established,
		Streams:     len(c.streams),
		CreateDate:  c.created.UnixMilli(),
	}
	_ = json.Unmarshal(c.fields["appKey"], &ci.AppKey)
	_ = json.Unmarshal(c.fields["clientVersion"], &ci.ClientVersion)
	_ = json.Unmarshal(c.fields["mediaProviders"], &ci.MediaProviders)
	ci.Custom = c.fields["custom"]
	return ci
}
