//! The BGP decision process (RFC 4271 §9.1): best path, the ECMP set of equal paths, and the reason each other path lost.
