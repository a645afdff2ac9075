//! IKEv2 wire format (RFC 7296 §3): header and payloads, encode and decode, never panicking on input.
