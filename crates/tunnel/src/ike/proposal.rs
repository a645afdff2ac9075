//! IKEv2 transforms and proposals (RFC 7296 §3.3), parsed from strongSwan notation such as `aes256gcm16-prfsha256-x25519`, and proposal selection.
