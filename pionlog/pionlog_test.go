package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerFactory(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := NewLoggerFactory(log).NewLogger("dtls")

	l.Trace("hidden trace")
	l.Tracef("hidden %s", "tracef")
	l.Debugf("debug %d", 1)
	l.Info("info msg")
	l.Warnf("warn %s", "x")
	l.Error("error msg")

	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="debug 1" component=dtls`,
		`level=INFO msg="info msg" component=dtls`,
		`level=WARN msg="warn x" component=dtls`,
		`level=ERROR msg="error msg" component=dtls`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("trace messages logged below the handler level:\n%s", out)
	}
}

func TestNilLogger(t *testing.T) {
	l := NewLoggerFactory(nil).NewLogger("x")
	l.Debug("does not panic")
}
