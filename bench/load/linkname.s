// Empty: lets reader.go declare socketDispatch without a body (go:linkname to ice's demux).
