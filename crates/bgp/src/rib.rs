//! Routing information bases: Adj-RIB-In per peer, Loc-RIB, Adj-RIB-Out per peer.
