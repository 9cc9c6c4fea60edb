//! Panic-free big-endian reads. A read past the end yields zero; the views only expose
//! getters after `new_checked` has proven the bytes are there, so zero is never observed on
//! a checked view, but the code path that could panic does not exist.

#[inline(always)]
pub(crate) fn u8_at(buf: &[u8], offset: usize) -> u8 {
    buf.get(offset).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn array_at<const N: usize>(buf: &[u8], offset: usize) -> [u8; N] {
    match buf.get(offset..).and_then(|rest| rest.first_chunk::<N>()) {
        Some(bytes) => *bytes,
        None => [0; N],
    }
}

#[inline(always)]
pub(crate) fn be16_at(buf: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes(array_at(buf, offset))
}

#[inline(always)]
pub(crate) fn be32_at(buf: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(array_at(buf, offset))
}

/// `buf[start..end]`, or an empty slice if that range is not inside `buf`.
#[inline(always)]
pub(crate) fn slice(buf: &[u8], start: usize, end: usize) -> &[u8] {
    buf.get(start..end).unwrap_or(&[])
}

/// `buf[start..]`, or an empty slice if `start` is past the end.
#[inline(always)]
pub(crate) fn tail(buf: &[u8], start: usize) -> &[u8] {
    buf.get(start..).unwrap_or(&[])
}

/// Write `value` at `offset`; a write past the end is dropped. The mutable views only
/// expose setters for fields `new_checked` has proven present, so nothing is ever dropped on
/// a checked view, but the code path that could panic does not exist.
#[inline(always)]
pub(crate) fn put_bytes(buf: &mut [u8], offset: usize, value: &[u8]) {
    if let Some(dst) = buf
        .get_mut(offset..)
        .and_then(|rest| rest.get_mut(..value.len()))
    {
        dst.copy_from_slice(value);
    }
}

#[inline(always)]
pub(crate) fn put_u8(buf: &mut [u8], offset: usize, value: u8) {
    if let Some(byte) = buf.get_mut(offset) {
        *byte = value;
    }
}

/// Replace the bits of `mask` in the byte at `offset` with those of `bits`.
#[inline(always)]
pub(crate) fn put_masked_u8(buf: &mut [u8], offset: usize, mask: u8, bits: u8) {
    put_u8(buf, offset, u8_at(buf, offset) & !mask | bits & mask);
}

#[inline(always)]
pub(crate) fn put_be16(buf: &mut [u8], offset: usize, value: u16) {
    put_bytes(buf, offset, &value.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put_be32(buf: &mut [u8], offset: usize, value: u32) {
    put_bytes(buf, offset, &value.to_be_bytes());
}

/// A field value a setter writes big-endian at an offset (dropped past the end).
pub(crate) trait Put {
    fn put(self, buf: &mut [u8], offset: usize);
}

impl Put for u8 {
    #[inline(always)]
    fn put(self, buf: &mut [u8], offset: usize) {
        put_u8(buf, offset, self);
    }
}

impl Put for u16 {
    #[inline(always)]
    fn put(self, buf: &mut [u8], offset: usize) {
        put_be16(buf, offset, self);
    }
}

impl Put for u32 {
    #[inline(always)]
    fn put(self, buf: &mut [u8], offset: usize) {
        put_be32(buf, offset, self);
    }
}

impl<const N: usize> Put for [u8; N] {
    #[inline(always)]
    fn put(self, buf: &mut [u8], offset: usize) {
        put_bytes(buf, offset, &self);
    }
}

/// Setters for whole fields, one line each: `set_ttl(u8) at field::TTL;`, or with a
/// conversion to the wire type, `set_protocol(IpProtocol as u8) at field::PROTOCOL;`.
/// Used inside `impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T>` blocks.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($ty:ty $(as $raw:ty)?) at $offset:expr;)*) => {$(
        $(#[$doc])*
        #[inline]
        pub fn $name(&mut self, value: $ty) {
            $(let value = <$raw>::from(value);)?
            $crate::bytes::Put::put(value, self.buffer.as_mut(), $offset);
        }
    )*};
}
pub(crate) use setters;

/// `buf[start..end]`, or an empty slice if that range is not inside `buf`.
#[inline(always)]
pub(crate) fn slice_mut(buf: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    buf.get_mut(start..end).unwrap_or(&mut [])
}

/// `buf[start..]`, or an empty slice if `start` is past the end.
#[inline(always)]
pub(crate) fn tail_mut(buf: &mut [u8], start: usize) -> &mut [u8] {
    buf.get_mut(start..).unwrap_or(&mut [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero() {
        let b = [1u8, 2, 3];
        assert_eq!(u8_at(&b, 2), 3);
        assert_eq!(u8_at(&b, 3), 0);
        assert_eq!(be16_at(&b, 1), 0x0203);
        assert_eq!(be16_at(&b, 2), 0);
        assert_eq!(be32_at(&b, usize::MAX), 0);
        assert_eq!(slice(&b, 2, 1), &[] as &[u8]);
        assert_eq!(tail(&b, 4), &[] as &[u8]);
    }

    #[test]
    fn writes_past_the_end_are_dropped() {
        let mut b = [0u8; 3];
        put_be16(&mut b, 1, 0x0203);
        put_be16(&mut b, 2, 0xffff);
        put_be32(&mut b, usize::MAX, 0xffff_ffff);
        put_u8(&mut b, 0, 1);
        put_u8(&mut b, 3, 9);
        assert_eq!(b, [1, 2, 3]);
        assert!(slice_mut(&mut b, 2, 1).is_empty());
        assert!(tail_mut(&mut b, 4).is_empty());
        assert_eq!(tail_mut(&mut b, 2), &[3]);
    }
}
