//! Packets on the wire: the transfer key, `RollSiteHeader` in `Metadata.ext`, and the body
//! format of table batches.

use crate::error::{Error, Result};
use eggroll_proto::proxy::{Data, Metadata, Packet, Topic};
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;

/// `dataType` of an object (bytes, chunked).
pub const OBJECT: &str = "object";
/// `dataType` of a table (pair batches, by partition).
pub const TABLE: &str = "table";
/// `stage` of the last packet of a partition.
pub const FINISH: &str = "finish";
/// Header option carrying an object's total size.
pub const SIZE_OPTION: &str = "size";
/// Longest accepted field of a transfer key.
const MAX_FIELD: usize = 512;
/// Most partitions a transfer may have.
pub const MAX_PARTITIONS: i32 = 1 << 16;

/// What identifies one transfer: session, name, tag, source and destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransferKey {
    /// Session (job) id.
    pub session: String,
    /// Variable name.
    pub name: String,
    /// Tag (e.g. the iteration).
    pub tag: String,
    /// Sender's role.
    pub src_role: String,
    /// Sender's party.
    pub src_party: String,
    /// Receiver's role.
    pub dst_role: String,
    /// Receiver's party.
    pub dst_party: String,
}

impl TransferKey {
    /// EggRoll's "rs key": the fields joined by `#` behind `__rsk`.
    pub fn rs_key(&self) -> String {
        format!(
            "__rsk#{}#{}#{}#{}#{}#{}#{}",
            self.session,
            self.name,
            self.tag,
            self.src_role,
            self.src_party,
            self.dst_role,
            self.dst_party
        )
    }

    /// The key of a header, validated.
    pub fn from_header(h: &RollSiteHeader) -> Result<Self> {
        let key = Self {
            session: h.roll_site_session_id.clone(),
            name: h.name.clone(),
            tag: h.tag.clone(),
            src_role: h.src_role.clone(),
            src_party: h.src_party_id.clone(),
            dst_role: h.dst_role.clone(),
            dst_party: h.dst_party_id.clone(),
        };
        let fields = [
            ("rollSiteSessionId", &key.session, false),
            ("name", &key.name, false),
            ("tag", &key.tag, true),
            ("srcRole", &key.src_role, false),
            ("srcPartyId", &key.src_party, false),
            ("dstRole", &key.dst_role, false),
            ("dstPartyId", &key.dst_party, false),
        ];
        for (field, value, may_be_empty) in fields {
            if value.is_empty() && !may_be_empty {
                return Err(Error::BadPacket(format!(
                    "RollSiteHeader.{field} in Metadata.ext is empty"
                )));
            }
            if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
                return Err(Error::BadPacket(format!(
                    "RollSiteHeader.{field} in Metadata.ext is over {MAX_FIELD} bytes or has \
                     control characters"
                )));
            }
        }
        Ok(key)
    }

    /// A header for this transfer (the caller fills in the partition and batch fields).
    pub fn header(&self, data_type: &str) -> RollSiteHeader {
        RollSiteHeader {
            roll_site_session_id: self.session.clone(),
            name: self.name.clone(),
            tag: self.tag.clone(),
            src_role: self.src_role.clone(),
            src_party_id: self.src_party.clone(),
            dst_role: self.dst_role.clone(),
            dst_party_id: self.dst_party.clone(),
            data_type: data_type.to_string(),
            ..Default::default()
        }
    }

    /// The packet `Metadata` EggRoll puts around a header: src and dst topics, ext.
    pub fn metadata(&self, header: &RollSiteHeader) -> Metadata {
        Metadata {
            src: Some(Topic {
                name: self.name.clone(),
                party_id: self.src_party.clone(),
                role: self.src_role.clone(),
                callback: None,
            }),
            dst: Some(Topic {
                name: self.name.clone(),
                party_id: self.dst_party.clone(),
                role: self.dst_role.clone(),
                callback: None,
            }),
            seq: header.batch_seq,
            ext: header.encode_to_vec(),
            version: "2.0.0".into(),
            ..Default::default()
        }
    }

    /// A whole packet.
    pub fn packet(&self, header: &RollSiteHeader, body: impl Into<bytes::Bytes>) -> Packet {
        Packet {
            header: Some(self.metadata(header)),
            body: Some(Data {
                key: self.rs_key(),
                value: body.into(),
            }),
        }
    }
}

/// Where a packet goes: the destination topic of its header.
pub fn destination(p: &Packet) -> Result<(&str, &str)> {
    let h = p
        .header
        .as_ref()
        .ok_or_else(|| Error::BadPacket("the packet has no header (Packet.header)".into()))?;
    let dst = h
        .dst
        .as_ref()
        .ok_or_else(|| Error::BadPacket("the header has no destination (Metadata.dst)".into()))?;
    if dst.party_id.is_empty() {
        return Err(Error::BadPacket("Metadata.dst.partyId is empty".into()));
    }
    if dst.party_id.len() > MAX_FIELD || dst.role.len() > MAX_FIELD {
        return Err(Error::BadPacket(
            "Metadata.dst.partyId or role is too long".into(),
        ));
    }
    let role = if dst.role.is_empty() {
        "default"
    } else {
        &dst.role
    };
    Ok((&dst.party_id, role))
}

/// The decoded `RollSiteHeader` of a packet addressed to roll-site storage, validated.
pub fn rollsite_header(m: &Metadata) -> Result<RollSiteHeader> {
    if m.ext.is_empty() {
        return Err(Error::BadPacket(
            "Metadata.ext is empty: roll-site packets carry a serialized RollSiteHeader there"
                .into(),
        ));
    }
    let h = RollSiteHeader::decode(&m.ext[..]).map_err(|e| {
        Error::BadPacket(format!(
            "Metadata.ext is not a serialized RollSiteHeader: {e}"
        ))
    })?;
    if h.data_type != OBJECT && h.data_type != TABLE {
        return Err(Error::BadPacket(format!(
            "RollSiteHeader.dataType is {:?}; this roll-site stores \"{OBJECT}\" and \"{TABLE}\"",
            h.data_type
        )));
    }
    if !(1..=MAX_PARTITIONS).contains(&h.total_partitions) {
        return Err(Error::BadPacket(format!(
            "RollSiteHeader.totalPartitions is {}; it must be 1..={MAX_PARTITIONS}",
            h.total_partitions
        )));
    }
    if h.partition_id < 0 || h.partition_id >= h.total_partitions {
        return Err(Error::BadPacket(format!(
            "RollSiteHeader.partitionId {} is outside 0..{}",
            h.partition_id, h.total_partitions
        )));
    }
    if h.data_type == OBJECT && h.total_partitions != 1 {
        return Err(Error::BadPacket(
            "an object has exactly one partition (RollSiteHeader.totalPartitions = 1)".into(),
        ));
    }
    if !(0..1 << 40).contains(&h.batch_seq) {
        return Err(Error::BadPacket(format!(
            "RollSiteHeader.batchSeq {} is negative or absurdly large",
            h.batch_seq
        )));
    }
    Ok(h)
}

/// Appends one pair to a table batch: key length, key, value length, value (u32 big-endian).
pub fn push_pair(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// Splits a table batch into pairs; names the offset of a malformed one.
pub fn pairs(batch: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut rest = batch;
    let take = |rest: &mut &[u8], what: &str, at: usize| -> Result<usize> {
        if rest.len() < 4 {
            return Err(Error::BadPacket(format!(
                "table batch truncated: {what} length at byte {at} is cut off"
            )));
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        *rest = &rest[4..];
        if rest.len() < n {
            return Err(Error::BadPacket(format!(
                "table batch truncated: {what} at byte {at} says {n} bytes, {} remain",
                rest.len()
            )));
        }
        Ok(n)
    };
    while !rest.is_empty() {
        let at = batch.len() - rest.len();
        let n = take(&mut rest, "key", at)?;
        let (k, r) = rest.split_at(n);
        rest = r;
        let n = take(&mut rest, "value", at)?;
        let (v, r) = rest.split_at(n);
        rest = r;
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        push_pair(&mut b, b"k1", b"value one");
        push_pair(&mut b, b"", b"");
        push_pair(&mut b, b"k3", &[7u8; 300]);
        let p = pairs(&b).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (&b"k1"[..], &b"value one"[..]));
        assert_eq!(p[2].1.len(), 300);
        for cut in 1..b.len() {
            if cut == 19 || cut == 27 {
                continue; // pair boundaries
            }
            assert!(pairs(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn headers_validate() {
        let key = TransferKey {
            session: "s".into(),
            name: "n".into(),
            tag: "t".into(),
            src_role: "guest".into(),
            src_party: "1".into(),
            dst_role: "host".into(),
            dst_party: "2".into(),
        };
        let mut h = key.header(OBJECT);
        h.total_partitions = 1;
        let m = key.metadata(&h);
        assert_eq!(rollsite_header(&m).unwrap(), h);
        assert_eq!(TransferKey::from_header(&h).unwrap(), key);
        assert_eq!(key.rs_key(), "__rsk#s#n#t#guest#1#host#2");
        let mut bad = h.clone();
        bad.partition_id = 1;
        assert!(rollsite_header(&key.metadata(&bad)).is_err());
        let mut bad = h.clone();
        bad.name.clear();
        assert!(TransferKey::from_header(&bad).is_err());
        let mut m2 = m.clone();
        m2.ext = vec![0xff, 0xff, 0xff];
        let e = rollsite_header(&m2).unwrap_err().to_string();
        assert!(e.contains("Metadata.ext"), "{e}");
    }
}
