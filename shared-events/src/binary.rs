//! The byte encoding of snapshot bodies. Snapshots of a million resting orders must
//! load in well under 200 ms, which JSON cannot do (decoding it took seconds), so
//! each side writes its body with these two small helpers instead: fixed-width
//! little-endian integers, and byte strings prefixed with their `u32` length. The
//! body as a whole is covered by the snapshot header's CRC-32C, so a reader only has
//! to guard against running off the end or against values it does not accept, and
//! every such failure is an error naming the byte offset, never a panic.
//!
//! A body that repeats user names a million times would be mostly names: both sides
//! write a table of distinct names once ([`UserTable`]) and refer to a name by its
//! `u32` index in it.

use crate::accounts::Balance;
use crate::domain::Side;
use crate::market::Symbol;
use crate::state::MarketSpec;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest byte string a body may hold (a log line, in the write side's body).
pub const BYTES_LEN_MAX: usize = crate::codec::LINE_BYTES_MAX;

/// Why a body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot body, byte {offset}: {message}")]
pub struct BodyError {
    pub offset: usize,
    pub message: String,
}

/// Appends values to a body.
#[derive(Debug, Default)]
pub struct BodyWriter {
    buf: Vec<u8>,
}

impl BodyWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        BodyWriter {
            buf: Vec::with_capacity(bytes),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A count written as `u64`.
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// A side as one byte: 0 buy, 1 sell.
    pub fn side(&mut self, side: Side) {
        self.u8(match side {
            Side::Buy => 0,
            Side::Sell => 1,
        });
    }

    /// A byte string: its length as `u32`, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        assert!(b.len() <= BYTES_LEN_MAX, "a body string is bounded");
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }

    /// The markets of a state: their count, then each one's symbol, base and quote
    /// as byte strings. See [`BodyReader::markets`].
    pub fn markets(&mut self, markets: &[MarketSpec]) {
        self.count(markets.len());
        for m in markets {
            for s in [m.symbol, m.base, m.quote] {
                self.bytes(s.as_str().as_bytes());
            }
        }
    }

    /// The balances of a model: a flag (0: accounts off, 1: on), then their count
    /// and each one's user and asset (byte strings), available and held. See
    /// [`BodyReader::balances`].
    pub fn balances<'b>(
        &mut self,
        balances: Option<impl ExactSizeIterator<Item = (&'b str, Symbol, Balance)>>,
    ) {
        let Some(balances) = balances else {
            self.u8(0);
            return;
        };
        self.u8(1);
        self.count(balances.len());
        for (user, asset, balance) in balances {
            self.bytes(user.as_bytes());
            self.bytes(asset.as_str().as_bytes());
            self.u64(balance.available);
            self.u64(balance.held);
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads values from a body, front to back.
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BodyReader { buf, pos: 0 }
    }

    /// An error at the current position.
    pub fn error(&self, message: impl Into<String>) -> BodyError {
        BodyError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.buf.len() - self.pos < n {
            return Err(self.error(format!("ends early (wanted {n} more bytes)")));
        }
        let taken = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(taken)
    }

    /// The next `N` bytes, for a fixed-size record decoded field by field with no
    /// further bounds checks.
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], BodyError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// Where the next read starts, in bytes from the start of the body.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, BodyError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, BodyError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A reader of the next `n` bytes only (its errors name offsets in the whole
    /// body), which this one skips: for a section that is read elsewhere, such as
    /// on several threads at once.
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn split_off(&mut self, n: usize) -> Result<BodyReader<'a>, BodyError> {
        let start = self.pos;
        self.take(n)?;
        Ok(BodyReader {
            buf: &self.buf[..start + n],
            pos: start,
        })
    }

    /// A count written by [`BodyWriter::count`], at most `max`, and small enough that
    /// `count * item_bytes` bytes are still in the body: a corrupt count can never
    /// make the reader reserve more memory than the body's own size.
    pub fn count(&mut self, max: usize, item_bytes: usize) -> Result<usize, BodyError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) / item_bytes.max(1);
        if n > max as u64 || n > left as u64 {
            return Err(self.error(format!("count {n} is larger than the body allows")));
        }
        Ok(n as usize)
    }

    /// A side written by [`BodyWriter::side`].
    pub fn side(&mut self) -> Result<Side, BodyError> {
        match self.u8()? {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            other => Err(self.error(format!("side {other} is not 0 (buy) or 1 (sell)"))),
        }
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], BodyError> {
        let n = self.u32()? as usize;
        if n > BYTES_LEN_MAX {
            return Err(self.error(format!("string of {n} bytes is too long")));
        }
        self.take(n)
    }

    /// Markets written by [`BodyWriter::markets`]: at most
    /// [`MARKETS_MAX`](crate::state::MARKETS_MAX), each symbol checked.
    pub fn markets(&mut self) -> Result<Vec<MarketSpec>, BodyError> {
        // A market is at least three one-byte strings with their lengths.
        let n = self.count(crate::state::MARKETS_MAX, 15)?;
        let mut markets = Vec::with_capacity(n);
        for _ in 0..n {
            let mut symbol = || -> Result<Symbol, BodyError> {
                let raw = self.bytes()?;
                let text =
                    std::str::from_utf8(raw).map_err(|_| self.error("a symbol is not UTF-8"))?;
                Symbol::parse(text).map_err(|e| self.error(e.to_string()))
            };
            let (symbol, base, quote) = (symbol()?, symbol()?, symbol()?);
            markets.push(MarketSpec {
                symbol,
                base,
                quote,
            });
        }
        Ok(markets)
    }

    /// Balances written by [`BodyWriter::balances`] (`None`: accounts off), each
    /// user, asset and amount checked; whether a (user, asset) comes twice is the
    /// caller's to check as it builds its map.
    pub fn balances(&mut self) -> Result<Option<crate::accounts::BalanceList>, BodyError> {
        match self.u8()? {
            0 => return Ok(None),
            1 => {}
            flag => return Err(self.error(format!("accounts flag {flag} is neither 0 nor 1"))),
        }
        // A balance is at least two one-byte strings with their lengths and two u64s.
        let n = self.count(crate::accounts::ACCOUNTS_MAX * 64, 26)?;
        let mut balances = Vec::with_capacity(n);
        for _ in 0..n {
            let user = std::str::from_utf8(self.bytes()?)
                .ok()
                .filter(|u| crate::domain::is_valid_user(u))
                .ok_or_else(|| self.error("a balance's user is not a valid user name"))?
                .to_owned();
            let asset = std::str::from_utf8(self.bytes()?)
                .ok()
                .and_then(|a| Symbol::parse(a).ok())
                .ok_or_else(|| self.error("a balance's asset is not a valid symbol"))?;
            let (available, held) = (self.u64()?, self.u64()?);
            let max = crate::accounts::AMOUNT_MAX;
            if available > max || held > max {
                return Err(self.error(format!(
                    "{user}'s {asset} balance {available}/{held} is out of bounds"
                )));
            }
            balances.push((user, asset, Balance { available, held }));
        }
        Ok(Some(balances))
    }

    /// Succeeds only if every byte was read.
    pub fn end(&self) -> Result<(), BodyError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(self.error(format!("{extra} bytes after the end"))),
        }
    }
}

/// Distinct user names, each written once; orders refer to them by index.
#[derive(Debug, Default)]
pub struct UserTable {
    index: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl UserTable {
    /// The index of `user`, adding it on first sight.
    pub fn index(&mut self, user: &Arc<str>) -> u32 {
        if let Some(&i) = self.index.get(user) {
            return i;
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 users");
        self.index.insert(user.clone(), i);
        self.names.push(user.clone());
        i
    }

    /// Writes the table: the count, then each name.
    pub fn write(&self, w: &mut BodyWriter) {
        w.count(self.names.len());
        for name in &self.names {
            w.bytes(name.as_bytes());
        }
    }

    /// Reads a table written by [`UserTable::write`], checking every name, and
    /// returns the names in index order.
    pub fn read(r: &mut BodyReader) -> Result<Vec<Arc<str>>, BodyError> {
        // Each name takes at least its 4-byte length and one byte.
        let n = r.count(u32::MAX as usize, 5)?;
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            let bytes = r.bytes()?;
            let name = std::str::from_utf8(bytes)
                .ok()
                .filter(|s| crate::domain::is_valid_user(s))
                .ok_or_else(|| r.error("invalid user name"))?;
            names.push(Arc::from(name));
        }
        Ok(names)
    }
}

/// Looks up a user index read from a body.
pub fn user_at(names: &[Arc<str>], i: u32, r: &BodyReader) -> Result<Arc<str>, BodyError> {
    names
        .get(i as usize)
        .cloned()
        .ok_or_else(|| r.error(format!("user index {i} is not in the table")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut users = UserTable::default();
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let mut w = BodyWriter::default();
        let ia = users.index(&alice);
        let ib = users.index(&bob);
        assert_eq!((ia, ib, users.index(&alice)), (0, 1, 0));
        users.write(&mut w);
        w.u8(7);
        w.u32(ia);
        w.u64(u64::MAX);
        w.bytes(b"line");
        let body = w.finish();
        let mut r = BodyReader::new(&body);
        let names = UserTable::read(&mut r).unwrap();
        assert_eq!(names, vec![alice.clone(), bob]);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(user_at(&names, r.u32().unwrap(), &r).unwrap(), alice);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.bytes().unwrap(), b"line");
        r.end().unwrap();
    }

    #[test]
    fn truncation_and_bad_counts_are_errors() {
        let mut w = BodyWriter::default();
        w.count(3);
        w.u64(1);
        let body = w.finish();
        let mut r = BodyReader::new(&body);
        // Three 8-byte items cannot fit in the 8 bytes left.
        assert!(r.count(10, 8).is_err());
        let mut r = BodyReader::new(&body[..5]);
        assert_eq!(r.u64().unwrap_err().offset, 0);
        let mut r = BodyReader::new(&body);
        r.u32().unwrap();
        assert!(r.end().is_err());
    }

    #[test]
    fn a_split_off_section_reads_alone_and_names_whole_body_offsets() {
        let mut w = BodyWriter::default();
        w.u64(1);
        w.u64(2);
        w.u64(3);
        let body = w.finish();
        let mut r = BodyReader::new(&body);
        assert_eq!(r.u64().unwrap(), 1);
        let mut section = r.split_off(8).unwrap();
        assert_eq!(r.u64().unwrap(), 3);
        r.end().unwrap();
        assert_eq!(section.position(), 8);
        assert_eq!(section.array::<8>().unwrap(), &2u64.to_le_bytes());
        section.end().unwrap();
        assert_eq!(section.u8().unwrap_err().offset, 16);
        assert!(r.split_off(1).is_err());
    }

    proptest! {
        /// Whatever the bytes, reading fails cleanly or succeeds: no panic, no
        /// allocation beyond the body's size.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = BodyReader::new(&bytes);
            if let Ok(names) = UserTable::read(&mut r) {
                let _ = r.u32().map(|i| user_at(&names, i, &r));
                let _ = r.bytes();
                let _ = r.end();
            }
        }
    }
}
