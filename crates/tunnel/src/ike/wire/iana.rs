//! IKEv2 codepoints, open: every one is a newtype over its wire integer
//! with named constants, so unknown values survive decoding.
//!
//! Registry: <https://www.iana.org/assignments/ikev2-parameters/>.

use std::fmt;

/// Debug prints the RFC name when known, the number otherwise.
macro_rules! open_codepoint {
    ($(#[$meta:meta])* $name:ident($int:ty) { $($(#[$cmeta:meta])* $cname:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $int);

        impl $name {
            $($(#[$cmeta])* pub const $cname: $name = $name($value);)*

            /// The RFC name of this value, if it has one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($cname)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                $name(v)
            }
        }
    };
}

open_codepoint! {
    /// Exchange Type of the IKE header (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// IKE_SA_INIT.
        IKE_SA_INIT = 34,
        /// IKE_AUTH.
        IKE_AUTH = 35,
        /// CREATE_CHILD_SA.
        CREATE_CHILD_SA = 36,
        /// INFORMATIONAL.
        INFORMATIONAL = 37,
    }
}

open_codepoint! {
    /// Next Payload / payload type (RFC 7296 §3.2, RFC 7383).
    PayloadType(u8) {
        /// No Next Payload: the end of a chain.
        NO_NEXT_PAYLOAD = 0,
        /// Security Association (SA).
        SA = 33,
        /// Key Exchange (KE).
        KE = 34,
        /// Identification - Initiator (IDi).
        IDI = 35,
        /// Identification - Responder (IDr).
        IDR = 36,
        /// Certificate (CERT).
        CERT = 37,
        /// Certificate Request (CERTREQ).
        CERTREQ = 38,
        /// Authentication (AUTH).
        AUTH = 39,
        /// Nonce (Ni, Nr).
        NONCE = 40,
        /// Notify (N).
        NOTIFY = 41,
        /// Delete (D).
        DELETE = 42,
        /// Vendor ID (V).
        VENDOR_ID = 43,
        /// Traffic Selector - Initiator (TSi).
        TSI = 44,
        /// Traffic Selector - Responder (TSr).
        TSR = 45,
        /// Encrypted and Authenticated (SK).
        SK = 46,
        /// Configuration (CP).
        CP = 47,
        /// Extensible Authentication (EAP).
        EAP = 48,
        /// Encrypted and Authenticated Fragment (SKF, RFC 7383).
        SKF = 53,
    }
}

impl PayloadType {
    /// Whether this implementation recognizes the type, so that its
    /// Critical bit is ignored (RFC 7296 §2.5): every type of RFC 7296 and
    /// SKF. CERT, CERTREQ, CP and EAP are recognized but kept raw.
    pub fn is_recognized(self) -> bool {
        matches!(self.0, 33..=48 | 53)
    }
}

open_codepoint! {
    /// Security Protocol Identifier (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// IKE.
        IKE = 1,
        /// AH.
        AH = 2,
        /// ESP.
        ESP = 3,
    }
}

open_codepoint! {
    /// ID Type of the IDi/IDr payloads (RFC 7296 §3.5).
    IdType(u8) {
        /// A single four-octet IPv4 address.
        ID_IPV4_ADDR = 1,
        /// A fully qualified domain name, without terminator.
        ID_FQDN = 2,
        /// An RFC 822 email address.
        ID_RFC822_ADDR = 3,
        /// A single sixteen-octet IPv6 address.
        ID_IPV6_ADDR = 5,
        /// DER encoded ASN.1 X.500 Distinguished Name.
        ID_DER_ASN1_DN = 9,
        /// DER encoded ASN.1 X.509 GeneralName.
        ID_DER_ASN1_GN = 10,
        /// An opaque octet stream.
        ID_KEY_ID = 11,
    }
}

open_codepoint! {
    /// Auth Method of the AUTH payload (RFC 7296 §3.8, RFC 7427).
    AuthMethod(u8) {
        /// RSA Digital Signature.
        RSA_DIGITAL_SIGNATURE = 1,
        /// Shared Key Message Integrity Code.
        SHARED_KEY_MIC = 2,
        /// DSS Digital Signature.
        DSS_DIGITAL_SIGNATURE = 3,
        /// Digital Signature (RFC 7427).
        DIGITAL_SIGNATURE = 14,
    }
}

open_codepoint! {
    /// Traffic Selector Type (RFC 7296 §3.13.1).
    TsType(u8) {
        /// A range of IPv4 addresses.
        TS_IPV4_ADDR_RANGE = 7,
        /// A range of IPv6 addresses.
        TS_IPV6_ADDR_RANGE = 8,
    }
}

open_codepoint! {
    /// Notify Message Type (RFC 7296 §3.10.1, RFC 7383, RFC 7427, RFC 4555).
    /// Types below 16384 are errors, the others status.
    NotifyType(u16) {
        /// A critical payload type was not understood; data: the type.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// A message for an IKE SA we do not know.
        INVALID_IKE_SPI = 4,
        /// The major version is not supported.
        INVALID_MAJOR_VERSION = 5,
        /// A malformed message.
        INVALID_SYNTAX = 7,
        /// A message ID outside the window.
        INVALID_MESSAGE_ID = 9,
        /// An ESP or AH packet for an SA we do not know.
        INVALID_SPI = 11,
        /// None of the proposals is acceptable.
        NO_PROPOSAL_CHOSEN = 14,
        /// Wrong DH group in KE; data: the group expected.
        INVALID_KE_PAYLOAD = 17,
        /// The AUTH payload did not verify.
        AUTHENTICATION_FAILED = 24,
        /// Only one pair of traffic selectors is accepted.
        SINGLE_PAIR_REQUIRED = 34,
        /// No more Child SAs are accepted.
        NO_ADDITIONAL_SAS = 35,
        /// No internal address could be assigned.
        INTERNAL_ADDRESS_FAILURE = 36,
        /// A CP payload was required.
        FAILED_CP_REQUIRED = 37,
        /// The traffic selectors are not acceptable.
        TS_UNACCEPTABLE = 38,
        /// A packet's selectors do not match its SA.
        INVALID_SELECTORS = 39,
        /// Try again later (e.g. a rekey collision).
        TEMPORARY_FAILURE = 43,
        /// A Child SA to rekey does not exist.
        CHILD_SA_NOT_FOUND = 44,
        /// This is the only IKE SA between the two identities.
        INITIAL_CONTACT = 16384,
        /// The window size the sender supports.
        SET_WINDOW_SIZE = 16385,
        /// Further traffic selectors would also have been accepted.
        ADDITIONAL_TS_POSSIBLE = 16386,
        /// IPComp is supported.
        IPCOMP_SUPPORTED = 16387,
        /// NAT detection: hash of the source address and port.
        NAT_DETECTION_SOURCE_IP = 16388,
        /// NAT detection: hash of the destination address and port.
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// A stateless cookie to echo.
        COOKIE = 16390,
        /// Transport mode is requested.
        USE_TRANSPORT_MODE = 16391,
        /// The Child SA being rekeyed.
        REKEY_SA = 16393,
        /// TFC padding is not supported.
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        /// Non-first fragments are also sent.
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// MOBIKE is supported (RFC 4555).
        MOBIKE_SUPPORTED = 16396,
        /// IKE fragmentation is supported (RFC 7383).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// Hash algorithms for signatures (RFC 7427).
        SIGNATURE_HASH_ALGORITHMS = 16431,
    }
}

impl NotifyType {
    /// Whether this is an error type (below 16384).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknowns() {
        assert_eq!(format!("{:?}", NotifyType::COOKIE), "COOKIE");
        assert_eq!(format!("{:?}", NotifyType(40000)), "NotifyType(40000)");
        assert_eq!(PayloadType(46), PayloadType::SK);
        assert!(NotifyType::INVALID_SYNTAX.is_error());
        assert!(!NotifyType::INITIAL_CONTACT.is_error());
        assert!(PayloadType::CP.is_recognized());
        assert!(!PayloadType(49).is_recognized());
    }
}
