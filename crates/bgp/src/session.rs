//! The BGP session FSM (RFC 4271 §8): connect-retry, hold and keepalive timers, passive mode, collision detection; sans-IO.
