package signaling

import (
	"encoding/json"
	"testing"

	"github.com/rtcrelay/rtcrelay/media"
)

// FuzzDecodeMessage feeds arbitrary frames to the decoder and to every
// payload parser the server and client use; none may panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"message":"connection","data":[{"appKey":"defaultApp","mediaProviders":["WebRTC"],"clientVersion":"2.0"}]}`,
		`{"message":"ping","data":[null]}`,
		`{"message":"ping"}`,
		`{"message":"publishStream","data":[{"mediaSessionId":"a","name":"s","published":true,"sdp":"v=0\r\n"}]}`,
		`{"message":"setRemoteSDP","data":["a","v=0"]}`,
		`{"message":"notifyStreamStatusEvent","data":[{"mediaSessionId":"a","status":"FAILED","info":"Stream not found"}]}`,
		`{"message":"fail","data":[{"apiMethod":"StreamStatusEvent","id":"a","status":"FAILED"}]}`,
		`{"message":"availableStream","data":[{"id":"a","status":"true"}]}`,
		`{"message":"sendData","data":[{"operationId":"o","payload":{}}]}`,
		`{"message":"sendStreamEvent","data":[{"mediaSessionId":"a","type":"data","payload":[1]}]}`,
		`{"message":5}`, `[]`, `null`, `{"message":"x","data":"notarray"}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		if m.Name == "" {
			t.Fatal("decoded a message without a name")
		}
		var sr streamRequest
		_ = m.DecodePayload(&sr)
		var sd sendDataRequest
		_ = m.DecodePayload(&sd)
		var sp statusPayload
		_ = m.DecodePayload(&sp)
		var a availability
		_ = m.DecodePayload(&a)
		fields := parseFields(m.Payload())
		obj := statusObject(fields, sr.MediaSessionID, StatusFailed, InfoFor(nil), false, false)
		if _, err := EncodeMessage(MsgNotifyStreamStatusEvent, obj); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		out, err := EncodeMessage(m.Name)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := DecodeMessage(out)
		if err != nil || back.Name != m.Name || len(back.Data) != 1 {
			t.Fatalf("round trip %q: %+v %v", out, back, err)
		}
	})
}

func TestInfoFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "not found wrapped", err: wrap(media.ErrNotFound), want: InfoStreamNotFound},
		{name: "name in use", err: media.ErrNameInUse, want: InfoNameInUse},
		{name: "codecs", err: wrap(media.ErrNoCommonCodecs), want: InfoNoCommonCodecs},
		{name: "fingerprint", err: wrap(media.ErrDTLSFingerprint), want: InfoDTLSFingerprint},
		{name: "dtls", err: wrap(media.ErrDTLSFailed), want: InfoDTLSError},
		{name: "ice timeout", err: wrap(media.ErrICETimeout), want: InfoICETimeout},
		{name: "ice", err: wrap(media.ErrICEFailed), want: InfoICEError},
		{name: "loop", err: wrap(media.ErrRestricted), want: InfoRestrictedAccess},
		{name: "peer closed", err: wrap(media.ErrPeerClosed), want: InfoUser},
		{name: "publisher stop", err: media.ErrPublisherStopped, want: InfoPublisherStop},
		{name: "session disconnect", err: wrap(ErrSessionDisconnect), want: InfoSessionDisconnect},
		{name: "shutdown", err: ErrShutdown, want: InfoRequestedShutdown},
		{name: "deadline", err: wrap(contextDeadline()), want: InfoICETimeout},
		{name: "remote", err: &StreamError{Status: StatusFailed, Info: "Restricted access"}, want: InfoRestrictedAccess},
		{name: "other", err: json.Unmarshal([]byte("{"), &struct{}{}), want: InfoFailedByError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := InfoFor(tc.err); got != tc.want {
				t.Fatalf("InfoFor(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func BenchmarkDecodeStatus(b *testing.B) {
	frame := []byte(`{"message":"notifyStreamStatusEvent","data":[{"mediaSessionId":"f7ad8fe0-e8a9-11f1-b0aa-0786e404480f","name":"s","status":"PUBLISHING","info":"","audioState":{"muted":false}}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		m, err := DecodeMessage(frame)
		if err != nil {
			b.Fatal(err)
		}
		var sp statusPayload
		if err := m.DecodePayload(&sp); err != nil {
			b.Fatal(err)
		}
	}
}
