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
// echoed plus sessionId/authToken and status ESTABLISHED.
func (c *conn) onConnection(m *Message) {
	s := c.srv
	fields := parseFields(m.Payload())
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.established {
		c.log.Debug("repeated connection message ignored")
		return
	}
	c.fields = fields
	c.established = true
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
	c.log.Info("session established", "remote", c.remote)
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
