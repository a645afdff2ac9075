//! Helpers to write length-prefixed fields: reserve the length, write the
//! contents, then back-patch the length once it is known.

use super::error::EncodeError;

/// Reserves a one-octet length field; returns its position.
pub(crate) fn begin_u8(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.push(0);
    at
}

/// Writes the length of everything after the one-octet field at `at`.
pub(crate) fn end_u8(out: &mut [u8], at: usize, field: &'static str) -> Result<(), EncodeError> {
    let length = out.len().saturating_sub(at.saturating_add(1));
    let value = u8::try_from(length).map_err(|_| EncodeError::FieldTooLong { field, length })?;
    if let Some(slot) = out.get_mut(at) {
        *slot = value;
    }
    Ok(())
}

/// Reserves a two-octet length field; returns its position.
pub(crate) fn begin_u16(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    at
}

/// Writes the length of everything after the two-octet field at `at`.
pub(crate) fn end_u16(out: &mut [u8], at: usize, field: &'static str) -> Result<(), EncodeError> {
    let length = out.len().saturating_sub(at.saturating_add(2));
    let value = u16::try_from(length).map_err(|_| EncodeError::FieldTooLong { field, length })?;
    patch_u16(out, at, value);
    Ok(())
}

/// Overwrites two octets at `at` with `value` (network order).
pub(crate) fn patch_u16(out: &mut [u8], at: usize, value: u16) {
    if let Some(slot) = out.get_mut(at..at.saturating_add(2)) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}
