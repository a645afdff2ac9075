//! Known-answer tests against strongSwan 5.x (Debian's charon).
//!
//! Captured from two charons talking to each other in throwaway network
//! namespaces (initiator 192.0.2.1, responder 192.0.2.2, PSK auth with the
//! PSK below, IDs are the IPv4 addresses) with the harness's
//! `strongswan.conf` and `filelog { stderr { ike = 4 lib = 4 enc = 4 chd = 4 } }`.
//! At those levels the initiator logs the DH shared secret, SKEYSEED, every
//! `SK_*` key, the AUTH octets and result, each Encrypted payload's IV, AAD
//! ("assoc"), plaintext, ciphertext and ICV, the child SA seed (Ni | Nr)
//! and the child keys. The hex below is copied from the initiator's log.
//!
//! Each fixture checks, given only what is on the wire plus `g^ir`:
//! SKEYSEED and all seven `SK_*`; both AUTH payloads; the first child's
//! keys; the IKE_AUTH request as strongSwan protected it (unprotect, and
//! for GCM protect reproduces it byte for byte) and the IKE_AUTH response
//! (unprotect with the responder's keys).

use zeroize::Zeroizing;

use super::*;
use crate::ike::proposal::{DhGroup, Encr, IkeAlgorithms, Integ, Prf};

struct Fixture {
    prf: Prf,
    encr: Encr,
    integ: Option<Integ>,
    g_ir: &'static str,
    ni: &'static str,
    nr: &'static str,
    spi_i: &'static str,
    spi_r: &'static str,
    skeyseed: &'static str,
    sk_d: &'static str,
    sk_ai: &'static str,
    sk_ar: &'static str,
    sk_ei: &'static str,
    sk_er: &'static str,
    sk_pi: &'static str,
    sk_pr: &'static str,
    psk: &'static str,
    /// The IKE_SA_INIT request as sent (the initiator's RealMessage1).
    init_message: &'static str,
    /// IDi payload body from the ID Type octet on.
    id_i: &'static str,
    auth_i: &'static str,
    /// The IKE_SA_INIT response as sent (the responder's RealMessage2).
    resp_message: &'static str,
    id_r: &'static str,
    auth_r: &'static str,
    child_encr_i: &'static str,
    child_encr_r: &'static str,
    child_integ_i: &'static str,
    child_integ_r: &'static str,
    /// IKE_AUTH request: IKE header + SK generic header, the SK body, and
    /// the inner payloads.
    out_prefix: &'static str,
    out_body: &'static str,
    out_plain: &'static str,
    /// IKE_AUTH response, likewise.
    in_prefix: &'static str,
    in_body: &'static str,
    in_plain: &'static str,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn spi(s: &str) -> [u8; 8] {
    h(s).try_into().unwrap()
}

fn algs(f: &Fixture) -> IkeAlgorithms {
    IkeAlgorithms {
        encr: f.encr,
        integ: f.integ,
        prf: f.prf,
        // Not used by key derivation.
        dh: DhGroup::Curve25519,
    }
}

fn ike_keys(f: &Fixture) -> IkeKeys {
    IkeKeys::derive(
        &algs(f),
        &h(f.g_ir),
        &h(f.ni),
        &h(f.nr),
        &spi(f.spi_i),
        &spi(f.spi_r),
    )
    .unwrap()
}

fn check_ike_keys(f: &Fixture) {
    let seed: Zeroizing<Vec<u8>> = skeyseed(f.prf, &h(f.ni), &h(f.nr), &h(f.g_ir));
    assert_eq!(hex::encode(&*seed), f.skeyseed, "SKEYSEED");
    let k = ike_keys(f);
    let got = [
        k.sk_d(),
        k.sk_ai(),
        k.sk_ar(),
        k.sk_ei(),
        k.sk_er(),
        k.sk_pi(),
        k.sk_pr(),
    ]
    .map(hex::encode);
    let expected = [f.sk_d, f.sk_ai, f.sk_ar, f.sk_ei, f.sk_er, f.sk_pi, f.sk_pr];
    let names = ["SK_d", "SK_ai", "SK_ar", "SK_ei", "SK_er", "SK_pi", "SK_pr"];
    for ((g, e), n) in got.iter().zip(expected).zip(names) {
        assert_eq!(g, e, "{n}");
    }
}

fn check_auth(f: &Fixture) {
    let k = ike_keys(f);
    let psk = f.psk.as_bytes();
    // The initiator's AUTH: its IKE_SA_INIT request, Nr, SK_pi, IDi.
    let auth_i = psk_auth(
        f.prf,
        psk,
        &h(f.init_message),
        &h(f.nr),
        k.sk_pi(),
        &h(f.id_i),
    );
    assert_eq!(hex::encode(&*auth_i), f.auth_i, "AUTH of the initiator");
    // The responder's: its IKE_SA_INIT response, Ni, SK_pr, IDr.
    let auth_r = psk_auth(
        f.prf,
        psk,
        &h(f.resp_message),
        &h(f.ni),
        k.sk_pr(),
        &h(f.id_r),
    );
    assert_eq!(hex::encode(&*auth_r), f.auth_r, "AUTH of the responder");
    let verify = |received: &[u8]| {
        verify_psk_auth(
            f.prf,
            psk,
            &h(f.resp_message),
            &h(f.ni),
            k.sk_pr(),
            &h(f.id_r),
            received,
        )
    };
    assert_eq!(verify(&h(f.auth_r)), Ok(()));
    assert_eq!(verify(&h(f.auth_i)), Err(CryptoError::AuthFailed));
}

fn check_child(f: &Fixture) {
    let k = ike_keys(f);
    let c = ChildKeys::derive(f.prf, k.sk_d(), f.encr, f.integ, None, &h(f.ni), &h(f.nr)).unwrap();
    assert_eq!(hex::encode(&*c.encr_i), f.child_encr_i, "child encr i->r");
    assert_eq!(hex::encode(&*c.encr_r), f.child_encr_r, "child encr r->i");
    assert_eq!(
        hex::encode(&*c.integ_i),
        f.child_integ_i,
        "child integ i->r"
    );
    assert_eq!(
        hex::encode(&*c.integ_r),
        f.child_integ_r,
        "child integ r->i"
    );
}

fn check_sk(f: &Fixture) {
    let k = ike_keys(f);
    let out = k.sk_cipher(true).unwrap();
    let inbound = k.sk_cipher(false).unwrap();
    let plain = out.unprotect(&h(f.out_prefix), &h(f.out_body)).unwrap();
    assert_eq!(hex::encode(&plain), f.out_plain, "IKE_AUTH request");
    let plain = inbound.unprotect(&h(f.in_prefix), &h(f.in_body)).unwrap();
    assert_eq!(hex::encode(&plain), f.in_plain, "IKE_AUTH response");
    // The wrong direction's keys do not open it.
    assert_eq!(
        out.unprotect(&h(f.in_prefix), &h(f.in_body)),
        Err(CryptoError::AuthFailed)
    );
    let body = h(f.out_body);
    // strongSwan pads this one minimally, as we do.
    assert_eq!(out.body_len(f.out_plain.len() / 2), body.len());
    if f.integ.is_none() {
        // GCM carries no random padding: protect reproduces strongSwan's bytes.
        let iv = &body[..out.iv_len()];
        let again = out.protect(&h(f.out_prefix), iv, &h(f.out_plain)).unwrap();
        assert_eq!(hex::encode(again), f.out_body);
    }
}

#[test]
fn gcm_x25519_ike_keys() {
    check_ike_keys(&GCM_X25519);
}

#[test]
fn gcm_x25519_auth() {
    check_auth(&GCM_X25519);
}

#[test]
fn gcm_x25519_child_keys() {
    check_child(&GCM_X25519);
}

#[test]
fn gcm_x25519_sk_payload() {
    check_sk(&GCM_X25519);
}

#[test]
fn cbc_modp2048_ike_keys() {
    check_ike_keys(&CBC_MODP2048);
}

#[test]
fn cbc_modp2048_auth() {
    check_auth(&CBC_MODP2048);
}

#[test]
fn cbc_modp2048_child_keys() {
    check_child(&CBC_MODP2048);
}

#[test]
fn cbc_modp2048_sk_payload() {
    check_sk(&CBC_MODP2048);
}

/// `aes256gcm16-prfsha256-x25519` with ESP `aes256gcm16-ecp256`: IKE_SA_INIT,
/// then `swanctl --rekey --ike` (CREATE_CHILD_SA rekeying the IKE SA,
/// §2.18) and `swanctl --rekey --child` on the new IKE SA (PFS with ECP
/// 256, §2.17). All values from the initiator's log; the new SPIs and
/// nonces are from the decrypted CREATE_CHILD_SA payloads.
mod rekey {
    pub(super) const G_IR: &str =
        "577397d814bbe065932483d5c254f3e6d57ae6098f14c0620790dff13464691b";
    pub(super) const NI_NR: &str = concat!(
        "b2f24b08a7037b48b509c712ee6663e146e0cecddba02bb485cd1899a062e303",
        "b15e1a31565900b8e90adb82ec1d03f1d3444124af5ff5f9ee448068b8e83eea",
    );
    pub(super) const SPI_I: &str = "be47ce7f6599357d";
    pub(super) const SPI_R: &str = "de61c0b2ae88345b";
    pub(super) const SK_D: &str =
        "62850a5fb0e6cd5f3f237abfc34f83bf273a0aa65b9788a4f48a876a07c3872f";

    pub(super) const NEW_G_IR: &str =
        "60f82931912ccfe8d2e650b49f3f7458f5543e6614a1b43c4a3ccd9ed7354763";
    pub(super) const NEW_NI: &str =
        "97b2941ecad025dc156a5e8cbf3f4d3f0a5d9b10f76cf97dbc2c27ed8320de02";
    pub(super) const NEW_NR: &str =
        "c8df76e7b4b6f87f8516444bc2bf3951ec03b2b0685b26b67aa99bb158db272e";
    pub(super) const NEW_SPI_I: &str = "c53b409ed97b4fe5";
    pub(super) const NEW_SPI_R: &str = "b6b5c2d0b38b550c";
    pub(super) const NEW_SKEYSEED: &str =
        "40ae6d6dba90e17412100810290a75e15312942ff947d3c8868676b7999c8e9e";
    pub(super) const NEW_SK: [&str; 7] = [
        "aa2ed8ef6d727c6a6df12a35bcf320801a41494fe2a4a7cd35399580068236a9",
        "",
        "",
        "0e5d3e5ff32e9f9ff29b606468bb1e69f05a42a72832de0fe57e4ea4ceeee9bb36632342",
        "5f827b1b8e0c654322d57defcef65a4858a4970dfc22e4baeaeff7652f372cc801a1caec",
        "874a6a8920ea7509d2dd52f00b1a8ae1e8f6129b3fd1bab61935c661048b9f89",
        "0c9fe5fed47b78118ca1fc23d2993c6155dd12fc3af69a58282a6d4d26cc47bc",
    ];

    /// The child rekey's seed as logged: g^ir (ECP 256 x) | Ni | Nr.
    pub(super) const CHILD_SEED: &str = concat!(
        "3e09949ada5a5113a74d8d3454da9b24a2aa06d0de0ed6e3ed5191f27002b9d4",
        "ed2f15de1b4e8073e4ab4fe95ee153a4056209d418a5d0aac4728223b15822d7",
        "b43a615d7a97fd6715128e522398682b1936b0ff43af775c7e56dfb005058754",
    );
    pub(super) const CHILD_ENCR_I: &str =
        "21fb63579b47c84c6dc117b42d1d14bb6fd2a4318eb5c23411393222a3d34b9106157f2e";
    pub(super) const CHILD_ENCR_R: &str =
        "4d6c0afe897abeaa26ed4e1dc2513985e768e391a35fb7daea7a188c71549f1aa2c577f1";
}

#[test]
fn gcm_x25519_ike_rekey_and_pfs_child_rekey() {
    let f = &GCM_X25519;
    let ni_nr = h(rekey::NI_NR);
    let (ni, nr) = ni_nr.split_at(32);
    let old = IkeKeys::derive(
        &algs(f),
        &h(rekey::G_IR),
        ni,
        nr,
        &spi(rekey::SPI_I),
        &spi(rekey::SPI_R),
    )
    .unwrap();
    assert_eq!(hex::encode(old.sk_d()), rekey::SK_D);

    // §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
    let mut data = h(rekey::NEW_G_IR);
    data.extend_from_slice(&h(rekey::NEW_NI));
    data.extend_from_slice(&h(rekey::NEW_NR));
    assert_eq!(
        hex::encode(&*prf(f.prf, old.sk_d(), &data)),
        rekey::NEW_SKEYSEED
    );
    let new = old
        .rekey(
            &algs(f),
            &h(rekey::NEW_G_IR),
            &h(rekey::NEW_NI),
            &h(rekey::NEW_NR),
            &spi(rekey::NEW_SPI_I),
            &spi(rekey::NEW_SPI_R),
        )
        .unwrap();
    let got = [
        new.sk_d(),
        new.sk_ai(),
        new.sk_ar(),
        new.sk_ei(),
        new.sk_er(),
        new.sk_pi(),
        new.sk_pr(),
    ]
    .map(hex::encode);
    assert_eq!(got, rekey::NEW_SK);

    // §2.17 with PFS, keyed by the new IKE SA's SK_d.
    let seed = h(rekey::CHILD_SEED);
    let (g_ir, nonces) = seed.split_at(32);
    let (ni, nr) = nonces.split_at(32);
    let child = ChildKeys::derive(f.prf, new.sk_d(), f.encr, None, Some(g_ir), ni, nr).unwrap();
    assert_eq!(hex::encode(&*child.encr_i), rekey::CHILD_ENCR_I);
    assert_eq!(hex::encode(&*child.encr_r), rekey::CHILD_ENCR_R);
}

/// `aes256gcm16-prfsha256-x25519`, ESP `aes256gcm16`.
const GCM_X25519: Fixture = Fixture {
    prf: Prf::HmacSha256,
    encr: Encr::AesGcm16 { key_bits: 256 },
    integ: None,
    g_ir: "8e411e99ea623dd3dfd7d72eed557fefd9c57efa7ae80f405f1fae35fa472b24",
    ni: "591c39a3e9101b75a1c83c562b97b22a888eae4bb7635d0cf0200f6f8c9b1eb2",
    nr: "59ecaf6c79b819eec0f94cdeb98df20c5c6227ba2448ff62c0f527a5fd96c087",
    spi_i: "bd4e6a7e3fff362f",
    spi_r: "c0c30a39b6931cee",
    skeyseed: "81b86de6a465be4420ae2b6cda664694724fee546697d17fe7c4da075df08334",
    sk_d: "0ab1a209e1038cd5ec0e91e65d0d203b844b3e85847758c8d68721f3d24c0f4f",
    sk_ai: "",
    sk_ar: "",
    sk_ei: concat!(
        "2d39aa676b6a8c7f6a7c13508a2e0b5d4567065c11dbe5d2ad83f98d846a5905",
        "d8877270",
    ),
    sk_er: concat!(
        "3f917c40c79e19db87cf7e3c3000d55995a04fa91ab62fb9570e07a657dad66a",
        "5ceb98d0",
    ),
    sk_pi: "0bdb163481a7965adf967cbd935981fd07ab92e45d5cd22466f20420f3de7770",
    sk_pr: "bef92541f1cb7fcd25d7792dcf98ecccdbb1ca0f84f2a8877ceee1805931eb61",
    psk: "vgh-test-psk-0123456789",
    init_message: concat!(
        "bd4e6a7e3fff362f00000000000000002120220800000000000000e822000028",
        "00000024010100030300000c01000014800e0100030000080200000500000008",
        "0400001f28000028001f000074d4f3ba2a860c4607f96588b01e0af944b8015d",
        "b79c3959dcd26a07de79ee3229000024591c39a3e9101b75a1c83c562b97b22a",
        "888eae4bb7635d0cf0200f6f8c9b1eb22900001c00004004b92cc0f82d37c372",
        "447b486b3d52eb02a60449f42900001c0000400520ff33b134eede93728f21a0",
        "cb170de71553ff5d290000080000402e290000100000402f0002000300040005",
        "0000000800004016",
    ),
    id_i: "01000000c0000201",
    auth_i: "f20f9c37a1c096c70543018488f40785ebfba8515212bde9f56377eb67d7642a",
    resp_message: concat!(
        "bd4e6a7e3fff362fc0c30a39b6931cee2120222000000000000000f022000028",
        "00000024010100030300000c01000014800e0100030000080200000500000008",
        "0400001f28000028001f00005ce4feadcdd27e8337ba315db65ee88cb2985dc9",
        "60650f134d3a0f97c0cb3e7b2900002459ecaf6c79b819eec0f94cdeb98df20c",
        "5c6227ba2448ff62c0f527a5fd96c0872900001c00004004e6f9b830d2e9f4de",
        "cb41676abc3d1727435e75e02900001c000040057fd3ba6a56c0d0200b00a7f9",
        "f6f261d471e88606290000080000402e290000100000402f0002000300040005",
        "29000008000040220000000800004014",
    ),
    id_r: "01000000c0000202",
    auth_r: "a0ab0e770ca345f54c49b05f0b6e9bf047dee60193e8d81c046e993e445150cf",
    child_encr_i: concat!(
        "86cc3478f914bebe79310bb9949f36a2dc12088107d6ebae0f7847128893b610",
        "dbec0c18",
    ),
    child_encr_r: concat!(
        "a9e0fc6b851fe20e2e032e00169cfc4d21fe2af004f36023455826349d33b9e9",
        "1aaea908",
    ),
    child_integ_i: "",
    child_integ_r: "",
    out_prefix: "bd4e6a7e3fff362fc0c30a39b6931cee2e20230800000001000000ed230000d1",
    out_body: concat!(
        "d74dcb7913d44fb828b0d2ebd73229420dfd0eaaf8ec442190f4c4446b4dff47",
        "6daec674c3403489ecdc12e30b713c48089ef64866577841c88166d46589ea59",
        "500859e3e86500eff9440a2eb6793dddf772c087796f23aba60bbb6c062eb9f9",
        "7567c602ae8922bdf4952f8770d629864d28d7b469f01546f78f5f032fe3b6ad",
        "9f7f730025995d2356bb58574b1024b4ec94e4af6fe1d51693e519fc5e2e3b0d",
        "bd52f516b3711152ccb63bfadff16264ec6a1d5e9678d882b0d10bb13ae77447",
        "fde1f21b37bc2296125fc0d39c",
    ),
    out_plain: concat!(
        "2900000c01000000c000020124000008000040002700000c01000000c0000202",
        "2100002802000000f20f9c37a1c096c70543018488f40785ebfba8515212bde9",
        "f56377eb67d7642a2c00002400000020010304027c29b31f0300000c01000014",
        "800e010000000008050000002d00001801000000070000100000ffff00000000",
        "ffffffff2900001801000000070000100000ffff00000000ffffffff29000008",
        "0000401429000008000040210000000800004024",
    ),
    in_prefix: "bd4e6a7e3fff362fc0c30a39b6931cee2e20232000000001000000c1240000a5",
    in_body: concat!(
        "62b9547aa7cf4ace2b418d64ab12f0a6d3dd5ceca7fde5bfd4a836dc84b58ce8",
        "4faefbace15fd6a8f259ecbbb6f2808da53fab5c870666d6e93b6882517aeea7",
        "2da9a4a39fbcb216e8f95442505fd37f5900c0f5e71eab7a74ae62c5ee70d678",
        "57b5d76538a89ac3d1af4e6e25b5f0ec55ab36bec57547d6f5526707cd7f857a",
        "32e132ca238f3bcdd7499b0a4d9d80d3b03316feca6a51210e1fe18b5b7ed33d",
        "69",
    ),
    in_plain: concat!(
        "2700000c01000000c00002022100002802000000a0ab0e770ca345f54c49b05f",
        "0b6e9bf047dee60193e8d81c046e993e445150cf2c0000240000002001030402",
        "c35e0f840300000c01000014800e010000000008050000002d00001801000000",
        "070000100000ffff00000000ffffffff0000001801000000070000100000ffff",
        "00000000ffffffff",
    ),
};

/// `aes256-sha256-modp2048`, ESP `aes256-sha256`.
const CBC_MODP2048: Fixture = Fixture {
    prf: Prf::HmacSha256,
    encr: Encr::AesCbc { key_bits: 256 },
    integ: Some(Integ::HmacSha256_128),
    g_ir: concat!(
        "ac9a5096e02203cc5ad50a6053b6f78b371626f6a20086d402df9311c5271d93",
        "5445dd2b6031f4ed953587c37e65e3564503c2e6a9bd8d0c5a242dd14b27749b",
        "b5f440d08538e3683dc9554642570e42b468dcdd786426f2882d2a7c98a34fbf",
        "c23f285a052aa8d6680d7039c31aa286a0165b0d22ed16176c20edb8b92b5b72",
        "304995fb83bdaf66d08f76861f1ef8dc8dab6e4b0756657e915055d0722948ee",
        "4b03cb1631d290032ec64cf0578612e039dc043d6c47d8f99da88e72251633b9",
        "e2557c07f83ff0436879b55a43f7827ba59fbbf2d4b9d58077c2cfcda538bd97",
        "b2b2badf63ee9ae191be4c284223ce54be3ab7adb1659f2b174fef9b9bafbc07",
    ),
    ni: "185d97923a1246463dbc3e0d04c8f8c154978f0eac4df19c80e19bbe50b7c3dc",
    nr: "db0258135dd322ef8e03eb5c53f868db44af910f2b1cac8b91ef4c8489b8fa65",
    spi_i: "c97f75e95f48f2a2",
    spi_r: "addcf4266c86b240",
    skeyseed: "bd421b6b1b7f29c2bdf8a9b0874d51dead6dcc7ceb81cd0258419e0f122e0453",
    sk_d: "ce3d00bd5aa213d8e089b7e4ba32317b9a0bf72b0c5894977b4351245158e10a",
    sk_ai: "fff9352ce52fed350f3fb29f95d6f61ae6daf214408d1cfb8561ebc40f46ccee",
    sk_ar: "d7188c4797c89225495cfaa8c5bd8eb084406baf75a90e3ba1aacb088273ddc9",
    sk_ei: "0b6b24c036ecac384a8b1044162d2aa1c24f281406c977eec9544eeea1f5ad41",
    sk_er: "12ab7e02131055d8d9769244b1655de4186c3acef032aba818c89e6e19bf92b2",
    sk_pi: "525e1e0d3461d89ee6276ef85e6259849d638a88e2d15d0bcd50791f4d6f2573",
    sk_pr: "9853bc0df01e802a00fd5141905aee7f24c3650ed2619ec22d7b978d5a9aff70",
    psk: "vgh-test-psk-0123456789",
    init_message: concat!(
        "c97f75e95f48f2a200000000000000002120220800000000000001d022000030",
        "0000002c010100040300000c0100000c800e0100030000080300000c03000008",
        "02000005000000080400000e28000108000e00009b3ce55fc99b45ba9ffcf7d6",
        "c3eaf8b0cc2e91d3bb9beb24e1ffb15bbd4e3fd238b6739bbe20383d51cd6842",
        "7efc3cfd9ec7e2bcdbef94458088d8e0b18d862c4097f613351c0f90f7621a94",
        "84ffe863c5b2da7c91ab82aa65397bcf94d3373b01a460a45052050ed2b5dfd0",
        "63174adc3e2f8f4a01a6bb1988fd50fe0b4088171e57982ab83f674b931a19f2",
        "0e92ffccc6d5a9ea9c5d7a0b7610bfb40318cf52930da478e32a906754f8b2e6",
        "9d3e1a108beda3e229478928c9da8449ef9ed9f7f35bc4a1c239e498fdd7de47",
        "c724f7db228cdf38d84d95aacfd5a6be4a8743d326dc612c5de8890214dc8ccc",
        "a11ee899111706d01a7732401954504572070d2b29000024185d97923a124646",
        "3dbc3e0d04c8f8c154978f0eac4df19c80e19bbe50b7c3dc2900001c00004004",
        "2cb89c7f7b742293b2fcd030c875a4d0bf9acaeb2900001c0000400578d50fca",
        "ea7d090a82f71f1da8643a28319ba33b290000080000402e290000100000402f",
        "00020003000400050000000800004016",
    ),
    id_i: "01000000c0000201",
    auth_i: "18d8bff2dec49297a33ebda1472b74c916317d3a0a039c171e35eb173ad3d2a2",
    resp_message: concat!(
        "c97f75e95f48f2a2addcf4266c86b2402120222000000000000001d822000030",
        "0000002c010100040300000c0100000c800e0100030000080300000c03000008",
        "02000005000000080400000e28000108000e0000604055c2cfd8eb6a1a877739",
        "b121d3345c8094d79ec414f948861d2340ddaa51567f1bc0ed4cf060d1623f3e",
        "5d3c01025f816df8f5c5473d75fdb780bb01c54b353717a5a60e05c07ed913e7",
        "a8dd3351f247c10394e7014dc4d1e81539afa2a98937dc6e3b9c171f2e0f8fe4",
        "d9c82d9348b94e5312b1d61dbdeab3719b5d20ae5494006cb91c880e8648d065",
        "90838be5e9664d20ff7130107f673e416d23850ac247e58aaac3a5ea8af7cfe3",
        "eabfdd5456c49801e0daefd55dd8211fc201e5e76bb9898a12c9e78f68f9212d",
        "9e1af213e17fd2fab362ae5317dc55a676a9c5333f2ce5493fce2e6834647bd5",
        "3b911085c56d26e7291cb56922b9658e51503cf529000024db0258135dd322ef",
        "8e03eb5c53f868db44af910f2b1cac8b91ef4c8489b8fa652900001c00004004",
        "dd03925c180708f8c617806b8642c2f15907e6e22900001c00004005b04df7a8",
        "2267bcbc0972bc69869c1181fe9d02ac290000080000402e290000100000402f",
        "000200030004000529000008000040220000000800004014",
    ),
    id_r: "01000000c0000202",
    auth_r: "474aa2a04c99ea063a118fd7761ab50f4f147d035adcb5a5feb314c4bddf6a8d",
    child_encr_i: "a8156d674b0783ed0cb53288ab9a459609f1bf63fd84cdc875be9983e4488b8c",
    child_encr_r: "0bbf62e3f31fe134f3b7540cea572a3e475e225926adad0ecb915798c591f984",
    child_integ_i: "4e3659bb05e22ed3ed3e1cc751ec8966278a4fc0f7ccabbf20a4b7444f07406f",
    child_integ_r: "441e8b57259c4ac3ecf57693969da53de52b57f51b9c8a524a85e64bdcef70de",
    out_prefix: "c97f75e95f48f2a2addcf4266c86b2402e2023080000000100000100230000e4",
    out_body: concat!(
        "7bc51a3b443c24ff0977f1dbfb6c1c39ed428b3d02b573a6ab113b9d18c1777a",
        "031db28389fe933471be1ee3dea7a2427d4814fd9f8dabd8e6e14401e879d742",
        "1cc30a708c61f9a5a5ae6688a0ab3218241b679cd50d25f311a9ef120c6dd242",
        "27bc12be2cf0947c7c7e2587d5753113fe6d4563feeb531b293869e5c08615ec",
        "46fb8d65df0b3337dc45c8426e60d3ed86017c47735f223da1a3dd4bb9a95be0",
        "e7420ebe3d95dba038dd532daeaffbe59a3f09769b65ca6b81c402050dda5001",
        "7096690a302cf57e8df7c13cc48442eaef9b1585daad60745329adc3b7649e51",
    ),
    out_plain: concat!(
        "2900000c01000000c000020124000008000040002700000c01000000c0000202",
        "210000280200000018d8bff2dec49297a33ebda1472b74c916317d3a0a039c17",
        "1e35eb173ad3d2a22c00002c0000002801030403fcfdfefc0300000c0100000c",
        "800e0100030000080300000c00000008050000002d0000180100000007000010",
        "0000ffff00000000ffffffff2900001801000000070000100000ffff00000000",
        "ffffffff290000080000401429000008000040210000000800004024",
    ),
    in_prefix: "c97f75e95f48f2a2addcf4266c86b2402e20232000000001000000e0240000c4",
    in_body: concat!(
        "bcfcb0ae962da098af02bac1eccf0a88ddb1633d4aa13a2e504479ae6cf9b1e9",
        "30c31eb449594cd19b7afffb933c228806a9b2757f3335648a8e0d728cc10888",
        "6ef46f74ff110872603998b2e2e9eae065fe5c95f957bc653980775c613a04f1",
        "eb9cc5775aa69e3e14ebe685b63eb18c793b8622cbdf3605f5f2a363b51a79a0",
        "3c94481761743a0d4edd5e3a40bb4e53849b421576c519468d42bf996937b06f",
        "c1141ce7240ef052641f54c48e754edf87bb83b42faf31908d119184c2622d5c",
    ),
    in_plain: concat!(
        "2700000c01000000c00002022100002802000000474aa2a04c99ea063a118fd7",
        "761ab50f4f147d035adcb5a5feb314c4bddf6a8d2c00002c0000002801030403",
        "c2f5c36a0300000c0100000c800e0100030000080300000c0000000805000000",
        "2d00001801000000070000100000ffff00000000ffffffff0000001801000000",
        "070000100000ffff00000000ffffffff",
    ),
};
