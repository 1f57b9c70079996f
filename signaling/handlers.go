package signaling

import (
	"encoding/json"
)

// handle dispatches one text message from the browser.
func (c *conn) handle(b []byte) {
	s := c.srv
	m, err := DecodeMessage(b)
	if err != nil {
		s.malformed.Add(1)
		c.log.Error("malformed message ignored", "err", err, "length", len(b))
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
		c.log.Debug("unknown message ignored", "message", m.Name)
	}
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
	a := s.cfg.Authorizer
	if a == nil {
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
			info := InfoFor(err)
			c.log.Info("connection refused by the application backend", "appKey", appKey, "info", info, "err", err)
			c.sendMsg(MsgFail, map[string]any{"apiMethod": "ConnectionStatusEvent", "status": "FAILED", "info": info, "sessionId": c.id, "appKey": appKey})
			c.abort()
			return
		}
		if custom, ok := out["custom"]; ok {
			fields["custom"] = custom
		}
		c.establishLocked(fields, appKey)
	}()
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
		c.log.Error("malformed availableStream", "err", err)
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
		c.log.Error("malformed sendData", "err", err)
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
		c.log.Error("malformed snapshot", "err", err)
		return
	}
	payload, _ := json.Marshal(map[string]string{"info": "Snapshot is not supported"})
	c.sendMsg(MsgNotifyStreamEvent, streamEvent{req.MediaSessionID, "snapshotFailed", payload})
}
