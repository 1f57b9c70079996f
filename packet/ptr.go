package packet

import "unsafe"

// uintptrDiff is the byte distance from base to p.
func uintptrDiff(p, base *byte) int64 {
	return int64(uintptr(unsafe.Pointer(p)) - uintptr(unsafe.Pointer(base)))
}
