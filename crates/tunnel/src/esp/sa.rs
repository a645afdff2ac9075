//! One ESP SA direction: seal (encrypt, sequence) and open (decrypt, verify) packets into caller buffers, with no allocation per packet.
