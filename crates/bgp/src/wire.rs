//! BGP wire format: OPEN (with capabilities), UPDATE (with path attributes), KEEPALIVE, NOTIFICATION, ROUTE-REFRESH.
