package media

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"s", "stream-1", "Камера 1", "cam_01.main", "a b", "名前", "x?y#z%", strings.Repeat("a", MaxNameLen)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, reason := range map[string]string{
		"": "empty", strings.Repeat("a", MaxNameLen+1): "longer than 128", strings.Repeat("a", 64<<10): "longer than 128",
		"a/b": `'/'`, `a\b`: `'\\'`, "a\x00b": "U+0000", "a\nb": "U+000A", "a\x7fb": "U+007F", "a\u0085b": "U+0085",
		"a\u200bb": "U+200B", "a\u202eb": "U+202E", " a": "starts with", "a\t": "control", "a ": "ends with",
		"\xff\xfe": "UTF-8",
	} {
		err := CheckName(name)
		var ne *NameError
		if !errors.Is(err, ErrBadName) || !errors.As(err, &ne) || !strings.Contains(ne.Reason, reason) {
			t.Errorf("%q: %v, want refused for %q", name, err, reason)
		}
	}
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"s", "a/b", "Камера", "\x00", " x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if err := CheckName(name); err == nil && (len(name) == 0 || len(name) > MaxNameLen || strings.ContainsAny(name, "/\\\x00")) {
			t.Fatalf("%q accepted", name)
		}
	})
}
