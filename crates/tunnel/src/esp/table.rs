//! The inbound SPI table and per-connection outbound SA, read by the datapath threads without a lock per packet.
