package signaling

import (
	"encoding/json"

	"github.com/gobwas/ws"

	"github.com/rtcrelay/rtcrelay/relayauth"
)

// handle dispatches one text message from the browser.
func (c *conn) handle(b []byte) {
	s := c.srv
	m, err := DecodeMessage(b)
	if err != nil {
		s.malformed.Add(1)
		c.log.Info("malformed message", "err", err, "length", len(b))
		c.badMessage("", "Malformed message: "+err.Error())
		return
	}
	switch m.Name {
	case MsgPing:
		c.sendMsg(MsgPong)
	case MsgPong:
		c.missed.Store(0)
	case MsgConnection:
		c.onConnection(&m)
	case MsgPublishStream:
		c.onStart(&m, true)
	case MsgPlayStream:
		c.onStart(&m, false)
	case MsgUnPublishStream, MsgStopStream:
		c.onStop(&m)
	case MsgSendStreamEvent:
		c.onStreamEvent(&m)
	case MsgAvailableStream:
		c.onAvailable(&m)
	case MsgSendData:
		c.onSendData(&m)
	case MsgSnapshot:
		c.onSnapshot(&m)
	case "submitBugReport", "sessionDebug", "pushLogs", "webRTCMetricsClientDescription", "webRTCMetricsBatch":
		c.log.Debug("message ignored", "message", m.Name)
	default:
		s.unknown.Add(1)
		c.log.Info("unknown message", "message", m.Name)
		c.badMessage(m.Name, "Unknown message: "+m.Name)
	}
}

// maxBadMessages is how many malformed, unknown or binary messages a session may send: each one is answered
// with a `fail` naming the problem (the Web SDK fires its WARN callback with it), and the next one closes the
// session (1008). The bound is also the rate limit of the answers.
const maxBadMessages = 16

// maxFailInfo bounds the info text of a fail (a decoder's error quotes the input).
const maxFailInfo = 200

// badMessage answers a message the server cannot act on. Reader goroutine only.
func (c *conn) badMessage(apiMethod, info string) {
	c.bad++
	if c.bad > maxBadMessages {
		c.srv.badClosed.Add(1)
		c.log.Warn("too many malformed messages, closing", "limit", maxBadMessages)
		c.close(ws.StatusPolicyViolation, "too many malformed messages")
		return
	}
	if len(info) > maxFailInfo {
		info = info[:maxFailInfo] + "…"
	}
	if apiMethod == "" {
		apiMethod = "unknown"
	}
	c.sendMsg(MsgFail, map[string]any{"apiMethod": apiMethod, "info": info})
}

// malformedData is the info of a message whose data is missing (err nil) or does not decode.
func malformedData(name string, err error) string {
	if err == nil {
		return "Malformed " + name + ": no data object"
	}
	return "Malformed " + name + ": " + err.Error()
}

// onConnection answers the handshake with getUserData: the connection fields
// echoed plus sessionId/authToken and status ESTABLISHED. With an Authorizer,
// the connect hook decides first (off the reader goroutine); a refusal is a
// fail message and a socket closed without a close frame (SDK session FAILED).
func (c *conn) onConnection(m *Message) {
	s := c.srv
	fields := parseFields(m.Payload())
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.established || c.connecting {
		c.log.Debug("repeated connection message ignored")
		return
	}
	appKey := defaultAppKey
	if v, ok := fields["appKey"]; ok {
		var k string
		if json.Unmarshal(v, &k) == nil && k != "" {
			appKey = k
		}
	}
	if !c.relayAuthLocked(fields, appKey) {
		return
	}
	a := s.cfg.Authorizer
	if a == nil || c.relay != nil { // an authenticated relay is not an application's client
		c.establishLocked(fields, appKey)
		return
	}
	c.connecting = true
	body := hookBody(fields, c.id, nil)
	s.streamsWG.Add(1)
	go func() {
		defer s.streamsWG.Done()
		out, err := a.Call(c.ctx, appKey, "connect", body)
		s.mu.Lock()
		defer s.mu.Unlock()
		c.connecting = false
		if c.ctx.Err() != nil {
			return // the socket went while the backend was asked
		}
		if err != nil {
			c.log.Info("connection refused by the application backend", "appKey", appKey, "err", err)
			c.refuseLocked(err, appKey)
			return
		}
		if custom, ok := out["custom"]; ok {
			fields["custom"] = custom
		}
		c.establishLocked(fields, appKey)
	}()
}

// relayAuthLocked verifies the relay token of a `connection` (removing it from the fields, so that it is neither
// echoed nor handed to a backend). It reports false when the connection was refused (RelayRequireAuth).
func (c *conn) relayAuthLocked(fields map[string]json.RawMessage, appKey string) bool {
	s := c.srv
	tok, ok, err := relayauth.FromCustom(fields["custom"])
	if !ok {
		return true
	}
	fields["custom"] = relayauth.WithoutToken(fields["custom"])
	if s.cfg.RelayAuth == nil {
		c.log.Debug("relay token ignored: no relay secret configured here")
		return true
	}
	if err == nil {
		err = s.cfg.RelayAuth.Verify(tok)
	}
	if err == nil {
		c.relay = &tok
		s.relaysAuthed.Add(1)
		c.log.Info("relay authenticated", "server", tok.Server)
		return true
	}
	s.relayAuthFailures.Add(1)
	if !s.cfg.RelayRequireAuth {
		c.log.Warn("relay token refused; the connection goes on as an ordinary client", "server", tok.Server, "err", err)
		return true
	}
	c.log.Warn("relay refused", "server", tok.Server, "err", err)
	c.refuseLocked(err, appKey)
	return false
}

// refuseLocked refuses a `connection`: a fail ConnectionStatusEvent FAILED with err's info, and the socket closed
// without a close frame (the SDK then reports the session FAILED).
func (c *conn) refuseLocked(err error, appKey string) {
	c.sendMsg(MsgFail, map[string]any{"apiMethod": "ConnectionStatusEvent", "status": "FAILED", "info": InfoFor(err), "sessionId": c.id, "appKey": appKey})
	c.abort()
}

func (c *conn) establishLocked(fields map[string]json.RawMessage, appKey string) {
	s := c.srv
	c.fields = fields
	c.established = true
	c.appKey = appKey
	reply := make(map[string]any, len(fields)+6)
	for k, v := range fields {
		reply[k] = v
	}
	delete(reply, "sipPassword")
	delete(reply, "webRTCMetricsServerDescription")
	reply["sessionId"] = c.id
	reply["authToken"] = c.id
	reply["status"] = "ESTABLISHED"
	reply["useWsTunnel"] = false
	reply["useWsTunnelPacketization2"] = false
	reply["useBase64BinaryEncoding"] = false
	if s.cfg.ServerID != "" {
		reply["serverId"] = s.cfg.ServerID
	}
	c.sendMsg(MsgGetUserData, reply)
	c.notifyLocked("ConnectionStatusEvent", fields, map[string]any{"status": "ESTABLISHED", "authToken": c.id})
	c.log.Info("session established", "remote", c.remote, "appKey", appKey)
}

type availability struct {
	ID     string `json:"id"`
	Status string `json:"status"` // the string "true" or "false": the SDK compares with == "true"
	Info   string `json:"info"`
}

func (c *conn) onAvailable(m *Message) {
	var req streamRequest
	if err := m.DecodePayload(&req); err != nil || m.Payload() == nil {
		c.srv.malformed.Add(1)
		c.log.Info("malformed availableStream", "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	a := availability{ID: req.MediaSessionID, Status: "false", Info: InfoStreamNotFound}
	if req.Name != "" && c.srv.cfg.Engine.Available(req.Name) {
		a.Status, a.Info = "true", "Available"
	}
	c.sendMsg(MsgAvailableStream, a)
}

type dataStatus struct {
	OperationID string `json:"operationId"`
	Status      string `json:"status"` // "ACCEPTED" or "FAILED"
	Info        string `json:"info,omitempty"`
}

func (c *conn) onSendData(m *Message) {
	var req sendDataRequest
	if err := m.DecodePayload(&req); err != nil || m.Payload() == nil {
		c.srv.malformed.Add(1)
		c.log.Info("malformed sendData", "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	c.sendMsg(MsgDataStatusEvent, dataStatus{OperationID: req.OperationID, Status: "ACCEPTED"})
}

// onSnapshot: snapshots need a decoder, which rtcrelay does not have; say so
// with snapshotFailed so the SDK's promise settles.
func (c *conn) onSnapshot(m *Message) {
	var req streamRequest
	if err := m.DecodePayload(&req); err != nil || m.Payload() == nil {
		c.srv.malformed.Add(1)
		c.log.Info("malformed snapshot", "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	payload, _ := json.Marshal(map[string]string{"info": "Snapshot is not supported"})
	c.sendMsg(MsgNotifyStreamEvent, streamEvent{req.MediaSessionID, "snapshotFailed", payload})
}
