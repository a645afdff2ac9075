//! The tunnel driver: UDP 500/4500 sockets, TUN devices and datapath threads. The only I/O in this crate.
