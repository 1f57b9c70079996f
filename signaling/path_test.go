package signaling

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestPath(t *testing.T) {
	c := AppendPath(nil, "A")
	if string(c) != `{"rtcrelayPath":["A"]}` || !PathContains(c, "A") || PathContains(c, "B") {
		t.Fatalf("%s", c)
	}
	c = AppendPath(json.RawMessage(`{"user":"x","rtcrelayPath":["A"]}`), "B")
	if !slices.Equal(ParsePath(c), []string{"A", "B"}) || string(c) != `{"rtcrelayPath":["A","B"],"user":"x"}` {
		t.Fatalf("%s", c)
	}
	for _, bad := range []string{`[1]`, `"s"`, `{"rtcrelayPath":5}`, `{`, `null`} {
		if PathContains(json.RawMessage(bad), "A") {
			t.Errorf("%s contains A", bad)
		}
		if got := ParsePath(AppendPath(json.RawMessage(bad), "A")); !slices.Equal(got, []string{"A"}) && bad != `{"rtcrelayPath":5}` {
			t.Errorf("AppendPath(%s) path %v", bad, got)
		}
	}
	if PathContains(c, "") {
		t.Fatal("empty id matched")
	}
}
