//! IANA codepoints used on the BGP wire, in one place.
//!
//! Registries: <https://www.iana.org/assignments/bgp-parameters>,
//! <https://www.iana.org/assignments/capability-codes>,
//! <https://www.iana.org/assignments/address-family-numbers> and
//! <https://www.iana.org/assignments/safi-namespace>.
//!
//! Every open registry is an enum with an `Unknown` variant, so a value we do
//! not know survives a decode/encode round trip and the protocol layer
//! decides what to do with it.

/// Defines an open codepoint enum: named variants plus `Unknown(repr)`,
/// with lossless conversions from and to the wire integer.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this implementation has no name for, kept as received.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(value: $repr) -> Self {
                match value {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

/// AS_TRANS (RFC 6793 §9): stands in for a 4-octet AS number towards a
/// speaker that only understands 2-octet AS numbers.
pub const AS_TRANS: u16 = 23456;

open_enum! {
    /// BGP message type (RFC 4271 §4.1, RFC 2918).
    pub enum MessageType: u8 {
        /// OPEN.
        Open = 1,
        /// UPDATE.
        Update = 2,
        /// NOTIFICATION.
        Notification = 3,
        /// KEEPALIVE.
        Keepalive = 4,
        /// ROUTE-REFRESH (RFC 2918).
        RouteRefresh = 5,
    }
}

open_enum! {
    /// OPEN optional parameter type (RFC 4271 §4.2, RFC 5492, RFC 9072).
    pub enum ParameterType: u8 {
        /// Authentication information (deprecated by RFC 5492).
        Authentication = 1,
        /// Capabilities (RFC 5492).
        Capabilities = 2,
        /// Extended optional parameters length marker (RFC 9072).
        ExtendedLength = 255,
    }
}

open_enum! {
    /// Capability code (RFC 5492).
    pub enum CapabilityCode: u8 {
        /// Multiprotocol extensions (RFC 4760).
        Multiprotocol = 1,
        /// Route refresh (RFC 2918).
        RouteRefresh = 2,
        /// Outbound route filtering (RFC 5291).
        OutboundRouteFiltering = 3,
        /// Extended next hop encoding (RFC 8950).
        ExtendedNextHop = 5,
        /// Extended message (RFC 8654).
        ExtendedMessage = 6,
        /// BGP role (RFC 9234).
        Role = 9,
        /// Graceful restart (RFC 4724).
        GracefulRestart = 64,
        /// Support for 4-octet AS numbers (RFC 6793).
        FourOctetAs = 65,
        /// ADD-PATH (RFC 7911).
        AddPath = 69,
        /// Enhanced route refresh (RFC 7313).
        EnhancedRouteRefresh = 70,
        /// Long-lived graceful restart (RFC 9494).
        LongLivedGracefulRestart = 71,
        /// FQDN (draft-walton-bgp-hostname-capability).
        Fqdn = 73,
        /// Pre-standard route refresh, still sent by some implementations.
        RouteRefreshCisco = 128,
    }
}

open_enum! {
    /// Address family identifier (RFC 4760, IANA address family numbers).
    pub enum Afi: u16 {
        /// IPv4.
        Ipv4 = 1,
        /// IPv6.
        Ipv6 = 2,
    }
}

open_enum! {
    /// Subsequent address family identifier (RFC 4760).
    pub enum Safi: u8 {
        /// Unicast forwarding.
        Unicast = 1,
        /// Multicast forwarding.
        Multicast = 2,
    }
}

open_enum! {
    /// Path attribute type code (RFC 4271 §5, IANA "BGP Path Attributes").
    pub enum AttributeType: u8 {
        /// ORIGIN (RFC 4271 §5.1.1).
        Origin = 1,
        /// AS_PATH (RFC 4271 §5.1.2).
        AsPath = 2,
        /// NEXT_HOP (RFC 4271 §5.1.3).
        NextHop = 3,
        /// MULTI_EXIT_DISC (RFC 4271 §5.1.4).
        MultiExitDisc = 4,
        /// LOCAL_PREF (RFC 4271 §5.1.5).
        LocalPref = 5,
        /// ATOMIC_AGGREGATE (RFC 4271 §5.1.6).
        AtomicAggregate = 6,
        /// AGGREGATOR (RFC 4271 §5.1.7).
        Aggregator = 7,
        /// COMMUNITIES (RFC 1997).
        Communities = 8,
        /// ORIGINATOR_ID (RFC 4456).
        OriginatorId = 9,
        /// CLUSTER_LIST (RFC 4456).
        ClusterList = 10,
        /// MP_REACH_NLRI (RFC 4760).
        MpReachNlri = 14,
        /// MP_UNREACH_NLRI (RFC 4760).
        MpUnreachNlri = 15,
        /// EXTENDED COMMUNITIES (RFC 4360).
        ExtendedCommunities = 16,
        /// AS4_PATH (RFC 6793).
        As4Path = 17,
        /// AS4_AGGREGATOR (RFC 6793).
        As4Aggregator = 18,
        /// LARGE_COMMUNITY (RFC 8092).
        LargeCommunities = 32,
        /// Only to Customer (RFC 9234).
        OnlyToCustomer = 35,
    }
}

open_enum! {
    /// NOTIFICATION error code (RFC 4271 §4.5, RFC 7313).
    pub enum ErrorCode: u8 {
        /// Message Header Error.
        MessageHeader = 1,
        /// OPEN Message Error.
        OpenMessage = 2,
        /// UPDATE Message Error.
        UpdateMessage = 3,
        /// Hold Timer Expired.
        HoldTimerExpired = 4,
        /// Finite State Machine Error.
        FiniteStateMachine = 5,
        /// Cease.
        Cease = 6,
        /// ROUTE-REFRESH Message Error (RFC 7313).
        RouteRefreshMessage = 7,
    }
}

open_enum! {
    /// Message Header Error subcode (RFC 4271 §6.1).
    pub enum MessageHeaderSubcode: u8 {
        /// Unspecific.
        Unspecific = 0,
        /// Connection Not Synchronized.
        ConnectionNotSynchronized = 1,
        /// Bad Message Length.
        BadMessageLength = 2,
        /// Bad Message Type.
        BadMessageType = 3,
    }
}

open_enum! {
    /// OPEN Message Error subcode (RFC 4271 §6.2, RFC 5492, RFC 9234).
    pub enum OpenSubcode: u8 {
        /// Unspecific.
        Unspecific = 0,
        /// Unsupported Version Number.
        UnsupportedVersionNumber = 1,
        /// Bad Peer AS.
        BadPeerAs = 2,
        /// Bad BGP Identifier.
        BadBgpIdentifier = 3,
        /// Unsupported Optional Parameter.
        UnsupportedOptionalParameter = 4,
        /// Unacceptable Hold Time.
        UnacceptableHoldTime = 6,
        /// Unsupported Capability (RFC 5492).
        UnsupportedCapability = 7,
        /// Role Mismatch (RFC 9234).
        RoleMismatch = 11,
    }
}

open_enum! {
    /// UPDATE Message Error subcode (RFC 4271 §6.3).
    pub enum UpdateSubcode: u8 {
        /// Unspecific.
        Unspecific = 0,
        /// Malformed Attribute List.
        MalformedAttributeList = 1,
        /// Unrecognized Well-known Attribute.
        UnrecognizedWellKnownAttribute = 2,
        /// Missing Well-known Attribute.
        MissingWellKnownAttribute = 3,
        /// Attribute Flags Error.
        AttributeFlagsError = 4,
        /// Attribute Length Error.
        AttributeLengthError = 5,
        /// Invalid ORIGIN Attribute.
        InvalidOriginAttribute = 6,
        /// Invalid NEXT_HOP Attribute.
        InvalidNextHopAttribute = 8,
        /// Optional Attribute Error.
        OptionalAttributeError = 9,
        /// Invalid Network Field.
        InvalidNetworkField = 10,
        /// Malformed AS_PATH.
        MalformedAsPath = 11,
    }
}

open_enum! {
    /// Finite State Machine Error subcode (RFC 6608).
    pub enum FsmSubcode: u8 {
        /// Unspecified error.
        Unspecified = 0,
        /// Receive unexpected message in OpenSent state.
        UnexpectedMessageInOpenSent = 1,
        /// Receive unexpected message in OpenConfirm state.
        UnexpectedMessageInOpenConfirm = 2,
        /// Receive unexpected message in Established state.
        UnexpectedMessageInEstablished = 3,
    }
}

open_enum! {
    /// Cease subcode (RFC 4486, RFC 8538, RFC 9384).
    pub enum CeaseSubcode: u8 {
        /// Maximum Number of Prefixes Reached.
        MaximumNumberOfPrefixesReached = 1,
        /// Administrative Shutdown.
        AdministrativeShutdown = 2,
        /// Peer De-configured.
        PeerDeconfigured = 3,
        /// Administrative Reset.
        AdministrativeReset = 4,
        /// Connection Rejected.
        ConnectionRejected = 5,
        /// Other Configuration Change.
        OtherConfigurationChange = 6,
        /// Connection Collision Resolution.
        ConnectionCollisionResolution = 7,
        /// Out of Resources.
        OutOfResources = 8,
        /// Hard Reset (RFC 8538).
        HardReset = 9,
        /// BFD Down (RFC 9384).
        BfdDown = 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_keep_unknown_values() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(AttributeType::from(v)), v);
            assert_eq!(u8::from(CapabilityCode::from(v)), v);
            assert_eq!(u8::from(MessageType::from(v)), v);
            assert_eq!(u8::from(ErrorCode::from(v)), v);
        }
        assert_eq!(Afi::from(2), Afi::Ipv6);
        assert_eq!(Afi::from(25), Afi::Unknown(25));
        assert_eq!(u16::from(Afi::Unknown(25)), 25);
        assert_eq!(Safi::from(1), Safi::Unicast);
    }
}
