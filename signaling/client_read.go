package signaling

import (
	"encoding/json"
	"errors"
	"io"
	"net"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// errServerClosed is the client's end reason after a close frame.
var errServerClosed = errors.New("signaling: server closed the connection")

func (c *Client) readLoop(src io.Reader) {
	err := c.readFrames(src)
	_ = c.nc.Close()
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = errServerClosed
	}
	c.mu.Lock()
	if c.refused != "" {
		err = &ConnectionError{Info: c.refused}
	}
	c.err = err
	for id, cs := range c.streams {
		delete(c.streams, id)
		c.finishLocked(cs, StreamStatus{MediaSessionID: id, Name: cs.name, Status: StatusFailed, Info: InfoSessionDisconnect, Local: true})
	}
	close(c.done)
	c.mu.Unlock()
	c.log.Debug("signaling client ended", "err", err)
}

func (c *Client) readFrames(src io.Reader) error {
	rd := &wsutil.Reader{Source: src, State: ws.StateClientSide, MaxMessageSize: c.cfg.MaxMessageSize, CheckUTF8: true}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return err
		}
		p, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		switch hdr.OpCode {
		case ws.OpPing:
			_ = c.write(ws.OpPong, p)
		case ws.OpClose:
			c.closeOnce.Do(func() {
				_ = c.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			})
			return nil
		case ws.OpText:
			c.dispatch(p)
		}
	}
}

type statusPayload struct {
	MediaSessionID string `json:"mediaSessionId"`
	ID             string `json:"id"`
	APIMethod      string `json:"apiMethod"`
	Name           string `json:"name"`
	Status         string `json:"status"`
	Info           string `json:"info"`
}

func (c *Client) dispatch(b []byte) {
	m, err := DecodeMessage(b)
	if err != nil {
		c.log.Error("malformed message from server", "err", err)
		return
	}
	switch m.Name {
	case MsgPing:
		if err := c.send(MsgPong, nil); err != nil {
			c.log.Debug("pong", "err", err)
		}
	case MsgGetUserData:
		c.mu.Lock()
		first := c.userData == nil
		c.userData = m.Payload()
		if c.userData == nil {
			c.userData = json.RawMessage("{}")
		}
		c.mu.Unlock()
		if first {
			close(c.established)
		}
	case MsgSetRemoteSDP:
		var id, sdp string
		if len(m.Data) < 2 || json.Unmarshal(m.Data[0], &id) != nil || json.Unmarshal(m.Data[1], &sdp) != nil {
			c.log.Error("malformed setRemoteSDP")
			return
		}
		c.mu.Lock()
		if cs := c.streams[id]; cs != nil {
			select {
			case cs.answer <- sdp:
			default:
				c.log.Error("second setRemoteSDP ignored", "mediaSessionId", id)
			}
		}
		c.mu.Unlock()
	case MsgNotifyStreamStatusEvent, MsgFail:
		var sp statusPayload
		if err := m.DecodePayload(&sp); err != nil {
			c.log.Error("malformed status", "err", err)
			return
		}
		if m.Name == MsgFail {
			if sp.APIMethod == "ConnectionStatusEvent" && sp.Status == StatusFailed {
				c.log.Warn("server refused the connection", "info", sp.Info)
				c.mu.Lock()
				c.refused = sp.Info
				c.mu.Unlock()
				return
			}
			if sp.APIMethod != "StreamStatusEvent" {
				c.log.Warn("server warning", "data", string(m.Payload()))
				return
			}
			sp.MediaSessionID = sp.ID
		}
		c.onStatus(StreamStatus{MediaSessionID: sp.MediaSessionID, Name: sp.Name, Status: sp.Status, Info: sp.Info, Raw: m.Payload()})
	case MsgAvailableStream:
		var a availability
		if err := m.DecodePayload(&a); err != nil {
			return
		}
		c.mu.Lock()
		if ch := c.avail[a.ID]; ch != nil {
			select {
			case ch <- a:
			default:
			}
		}
		c.mu.Unlock()
	default:
		c.log.Debug("message ignored", "message", m.Name)
	}
}

func (c *Client) onStatus(st StreamStatus) {
	if f := c.cfg.OnStatus; f != nil {
		f(st)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.streams[st.MediaSessionID]
	if cs == nil {
		c.log.Debug("status for unknown stream", "mediaSessionId", st.MediaSessionID, "status", st.Status)
		return
	}
	if st.Name == "" {
		st.Name = cs.name
	}
	if IsTerminal(st.Status) {
		delete(c.streams, st.MediaSessionID)
		c.finishLocked(cs, st)
		return
	}
	select {
	case cs.status <- st:
	default:
		c.dropped.Add(1)
	}
}

// finishLocked delivers the terminal status and closes the stream's channels.
func (c *Client) finishLocked(cs *clientStream, st StreamStatus) {
	if cs.finished {
		return
	}
	cs.finished = true
	cs.final = st
	select {
	case cs.status <- st:
	default:
		// Full: make room, the terminal status matters most.
		select {
		case <-cs.status:
			c.dropped.Add(1)
		default:
		}
		cs.status <- st
	}
	close(cs.status)
	close(cs.end)
}
