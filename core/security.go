package core

// security is a connection's packet protection and cryptographic
// handshake (issue 11): allocated only when the connection is configured
// for protection (Config.TLS or Config.PSK), so a plaintext connection
// pays one nil pointer for it. Its fields are added by the packet
// protection (protect*.go) and the handshake (handshake*.go).
type security struct {
	// Packet protection (protect*.go).
	protection
}
