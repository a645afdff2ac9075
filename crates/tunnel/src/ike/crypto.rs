//! IKEv2 key derivation (RFC 7296 §2.13–2.18): prf+, SKEYSEED, SK_* keys and the AUTH octets.
