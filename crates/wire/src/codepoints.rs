//! Typed enums for every IANA code point this crate handles.
//!
//! Every enum has an `Unknown(raw)` variant: values we do not know are kept,
//! never rejected, so the IKE layer can decide (e.g. skip an unknown
//! transform, ignore an unknown status notify). `From<raw>` always maps a
//! known value to its named variant, so `Unknown(x)` never holds a known `x`
//! after parsing.

macro_rules! codepoint {
    (
        $(#[$m:meta])*
        pub enum $name:ident : $ty:ty {
            $( $(#[$vm:meta])* $var:ident = $val:literal, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A value this crate has no name for, kept as received.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    x => $name::Unknown(x),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $( $name::$var => $val, )*
                    $name::Unknown(x) => x,
                }
            }
        }

        impl $name {
            /// The value as sent on the wire.
            pub fn to_wire(self) -> $ty {
                self.into()
            }

            /// Every named variant (handy for tests and generators).
            pub const KNOWN: &'static [$name] = &[ $( $name::$var, )* ];
        }
    };
}

codepoint! {
    /// IKEv2 payload types (RFC 7296 §3.2, RFC 7383 for SKF).
    pub enum PayloadType: u8 {
        NoNextPayload = 0,
        SecurityAssociation = 33,
        KeyExchange = 34,
        IdInitiator = 35,
        IdResponder = 36,
        Certificate = 37,
        CertificateRequest = 38,
        Authentication = 39,
        Nonce = 40,
        Notify = 41,
        Delete = 42,
        VendorId = 43,
        TsInitiator = 44,
        TsResponder = 45,
        /// SK.
        Encrypted = 46,
        Configuration = 47,
        Eap = 48,
        /// SKF (RFC 7383).
        EncryptedFragment = 53,
    }
}

codepoint! {
    /// IKEv2 exchange types (RFC 7296 §3.1).
    pub enum ExchangeType: u8 {
        IkeSaInit = 34,
        IkeAuth = 35,
        CreateChildSa = 36,
        Informational = 37,
        /// RFC 5723.
        IkeSessionResume = 38,
        /// RFC 9242.
        IkeIntermediate = 43,
    }
}

codepoint! {
    /// Security protocol identifiers (RFC 7296 §3.3.1). 0 is used in
    /// Notify payloads that carry no SPI.
    pub enum ProtocolId: u8 {
        Unspecified = 0,
        Ike = 1,
        Ah = 2,
        Esp = 3,
    }
}

codepoint! {
    /// Transform types (RFC 7296 §3.3.2).
    pub enum TransformType: u8 {
        Encr = 1,
        Prf = 2,
        Integ = 3,
        /// Diffie-Hellman group (called "Key Exchange Method" since RFC 9370).
        Dh = 4,
        Esn = 5,
    }
}

codepoint! {
    /// Transform type 1 IDs (encryption).
    pub enum EncrId: u16 {
        TripleDes = 3,
        Null = 11,
        AesCbc = 12,
        AesCtr = 13,
        AesCcm8 = 14,
        AesCcm12 = 15,
        AesCcm16 = 16,
        AesGcm8 = 18,
        AesGcm12 = 19,
        AesGcm16 = 20,
        /// RFC 7634.
        ChaCha20Poly1305 = 28,
    }
}

impl EncrId {
    /// Combined-mode (AEAD) ciphers take no separate INTEG transform.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            EncrId::AesCcm8
                | EncrId::AesCcm12
                | EncrId::AesCcm16
                | EncrId::AesGcm8
                | EncrId::AesGcm12
                | EncrId::AesGcm16
                | EncrId::ChaCha20Poly1305
        )
    }
}

codepoint! {
    /// Transform type 2 IDs (pseudo-random function).
    pub enum PrfId: u16 {
        HmacMd5 = 1,
        HmacSha1 = 2,
        Aes128Xcbc = 4,
        HmacSha2_256 = 5,
        HmacSha2_384 = 6,
        HmacSha2_512 = 7,
        Aes128Cmac = 8,
    }
}

codepoint! {
    /// Transform type 3 IDs (integrity).
    pub enum IntegId: u16 {
        None = 0,
        HmacMd5_96 = 1,
        HmacSha1_96 = 2,
        AesXcbc96 = 5,
        HmacSha2_256_128 = 12,
        HmacSha2_384_192 = 13,
        HmacSha2_512_256 = 14,
    }
}

codepoint! {
    /// Transform type 4 IDs (Diffie-Hellman groups), also used in KE payloads
    /// and INVALID_KE_PAYLOAD notifications.
    pub enum DhGroup: u16 {
        None = 0,
        Modp1024 = 2,
        Modp2048 = 14,
        Modp3072 = 15,
        Modp4096 = 16,
        Ecp256 = 19,
        Ecp384 = 20,
        Ecp521 = 21,
        Curve25519 = 31,
        Curve448 = 32,
    }
}

codepoint! {
    /// Transform type 5 IDs (extended sequence numbers).
    pub enum EsnId: u16 {
        NoEsn = 0,
        Esn = 1,
    }
}

codepoint! {
    /// Identification types (RFC 7296 §3.5).
    pub enum IdType: u8 {
        Ipv4Addr = 1,
        Fqdn = 2,
        Rfc822Addr = 3,
        Ipv6Addr = 5,
        DerAsn1Dn = 9,
        DerAsn1Gn = 10,
        KeyId = 11,
    }
}

codepoint! {
    /// Certificate encodings (RFC 7296 §3.6, RFC 4806, RFC 7670).
    pub enum CertEncoding: u8 {
        Pkcs7 = 1,
        Pgp = 2,
        DnsSignedKey = 3,
        X509Signature = 4,
        Kerberos = 6,
        Crl = 7,
        Arl = 8,
        Spki = 9,
        X509Attribute = 10,
        RawRsaKey = 11,
        HashUrlX509Cert = 12,
        HashUrlX509Bundle = 13,
        OcspContent = 14,
        RawPublicKey = 15,
    }
}

codepoint! {
    /// Authentication methods (RFC 7296 §3.8, RFC 4754, RFC 7427).
    pub enum AuthMethod: u8 {
        RsaSig = 1,
        SharedKeyMic = 2,
        DssSig = 3,
        EcdsaSha256P256 = 9,
        EcdsaSha384P384 = 10,
        EcdsaSha512P521 = 11,
        GenericSecurePassword = 12,
        Null = 13,
        /// RFC 7427: data = 1-byte length ‖ AlgorithmIdentifier ‖ signature.
        DigitalSignature = 14,
    }
}

codepoint! {
    /// Traffic selector types (RFC 7296 §3.13.1).
    pub enum TsType: u8 {
        Ipv4AddrRange = 7,
        Ipv6AddrRange = 8,
    }
}

codepoint! {
    /// Configuration payload types (RFC 7296 §3.15).
    pub enum CfgType: u8 {
        Request = 1,
        Reply = 2,
        Set = 3,
        Ack = 4,
    }
}

codepoint! {
    /// Configuration attribute types (RFC 7296 §3.15.1).
    pub enum CfgAttrType: u16 {
        InternalIp4Address = 1,
        InternalIp4Netmask = 2,
        InternalIp4Dns = 3,
        InternalIp4Nbns = 4,
        InternalIp4Dhcp = 6,
        ApplicationVersion = 7,
        InternalIp6Address = 8,
        InternalIp6Dns = 10,
        InternalIp6Dhcp = 12,
        InternalIp4Subnet = 13,
        SupportedAttributes = 14,
        InternalIp6Subnet = 15,
    }
}

codepoint! {
    /// Hash algorithms announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4,
    /// RFC 8420 for Identity).
    pub enum HashAlgorithm: u16 {
        Sha1 = 1,
        Sha2_256 = 2,
        Sha2_384 = 3,
        Sha2_512 = 4,
        Identity = 5,
    }
}

codepoint! {
    /// Notify message types (RFC 7296 §3.10.1 and later RFCs). 0..=16383 are
    /// errors, 16384.. are status types.
    pub enum NotifyType: u16 {
        UnsupportedCriticalPayload = 1,
        InvalidIkeSpi = 4,
        InvalidMajorVersion = 5,
        InvalidSyntax = 7,
        InvalidMessageId = 9,
        InvalidSpi = 11,
        NoProposalChosen = 14,
        InvalidKePayload = 17,
        AuthenticationFailed = 24,
        SinglePairRequired = 34,
        NoAdditionalSas = 35,
        InternalAddressFailure = 36,
        FailedCpRequired = 37,
        TsUnacceptable = 38,
        InvalidSelectors = 39,
        /// RFC 4555.
        UnacceptableAddresses = 40,
        /// RFC 4555.
        UnexpectedNatDetected = 41,
        TemporaryFailure = 43,
        ChildSaNotFound = 44,
        InitialContact = 16384,
        SetWindowSize = 16385,
        AdditionalTsPossible = 16386,
        IpcompSupported = 16387,
        NatDetectionSourceIp = 16388,
        NatDetectionDestinationIp = 16389,
        Cookie = 16390,
        UseTransportMode = 16391,
        HttpCertLookupSupported = 16392,
        RekeySa = 16393,
        EspTfcPaddingNotSupported = 16394,
        NonFirstFragmentsAlso = 16395,
        /// RFC 4555.
        MobikeSupported = 16396,
        AdditionalIp4Address = 16397,
        AdditionalIp6Address = 16398,
        NoAdditionalAddresses = 16399,
        UpdateSaAddresses = 16400,
        Cookie2 = 16401,
        NoNatsAllowed = 16402,
        /// RFC 4478.
        AuthLifetime = 16403,
        /// RFC 4739.
        MultipleAuthSupported = 16404,
        AnotherAuthFollows = 16405,
        /// RFC 5685.
        RedirectSupported = 16406,
        Redirect = 16407,
        RedirectedFrom = 16408,
        /// RFC 7383.
        Ikev2FragmentationSupported = 16430,
        /// RFC 7427.
        SignatureHashAlgorithms = 16431,
    }
}

impl NotifyType {
    /// RFC 7296 §3.10.1: types below 16384 report errors.
    pub fn is_error(self) -> bool {
        self.to_wire() < 16384
    }
}
