//! The BGP driver: TCP listener and connector bound to the tunnel addresses. The only I/O in this crate.
