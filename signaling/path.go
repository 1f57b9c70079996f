package signaling

import (
	"encoding/json"
	"slices"
)

// A relay agent marks the streams it publishes or plays with the path of servers the stream went through, in
// the custom field of publishStream/playStream: {"rtcrelayPath": ["<server id>", ...]} (oldest first). A server
// refuses a stream whose path already holds its own ID (a relay loop).

// customPath is the JSON shape of the relay path inside a custom field.
type customPath struct {
	Path []string `json:"rtcrelayPath"`
}

// ParsePath returns the rtcrelayPath list of a publishStream/playStream custom field (nil if absent or not a
// JSON object with that string array).
func ParsePath(custom json.RawMessage) []string {
	if len(custom) == 0 {
		return nil
	}
	var cp customPath
	if err := json.Unmarshal(custom, &cp); err != nil {
		return nil
	}
	return cp.Path
}

// PathContains reports whether serverID is in the rtcrelayPath of custom.
func PathContains(custom json.RawMessage, serverID string) bool {
	return serverID != "" && slices.Contains(ParsePath(custom), serverID)
}

// PathCustom builds the custom field that carries path.
func PathCustom(path []string) json.RawMessage {
	b, _ := json.Marshal(customPath{Path: path}) // a []string always marshals
	return b
}

// AppendPath returns custom with serverID appended to its rtcrelayPath, keeping every other field of a JSON
// object custom. A custom that is not a JSON object is replaced.
func AppendPath(custom json.RawMessage, serverID string) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(custom) > 0 {
		if err := json.Unmarshal(custom, &obj); err != nil || obj == nil {
			obj = map[string]json.RawMessage{}
		}
	}
	path := append(ParsePath(custom), serverID)
	b, _ := json.Marshal(path)
	obj["rtcrelayPath"] = b
	out, _ := json.Marshal(obj) // map of RawMessage from valid JSON always marshals
	return out
}
