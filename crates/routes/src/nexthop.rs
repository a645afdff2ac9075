//! Nexthop groups: the set of tunnel next hops a route uses (one for a single tunnel, several for ECMP).
