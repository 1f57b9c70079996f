package packet

import "testing"

func TestBufferLifecycle(t *testing.T) {
	b := Get()
	n := copy(b.ReadSlice(), []byte{0x80, 0x60, 0, 1})
	b.SetLen(n)
	if got := b.Bytes(); len(got) != 4 || got[0] != 0x80 {
		t.Fatalf("Bytes = %x", got)
	}
	b.SetBytes(b.Bytes()[1:3])
	if got := b.Bytes(); len(got) != 2 || got[0] != 0x60 {
		t.Fatalf("after SetBytes: %x", got)
	}
	b.Retain()
	if b.Refs() != 2 {
		t.Fatalf("refs = %d", b.Refs())
	}
	b.Release()
	b.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("double release did not panic")
		}
	}()
	b.Release()
}

func BenchmarkGetRelease(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		p := Get()
		p.SetLen(1200)
		p.Release()
	}
}
