//! The log as a Merkle tree (RFC 6962 / RFC 9162 hashing): leaf and node
//! hashes, the compact frontier an appender keeps, inclusion and consistency
//! proofs built from stored perfect subtrees, and their verification.
//!
//! Storage model: every *perfect* subtree — `2^level` leaves starting at a
//! multiple of `2^level` — is named by a [`NodeId`] and is final once its
//! last leaf exists, so an appender stores each one once and never updates
//! it. Any tree size's root and proofs are made of such nodes (a tree whose
//! size is not a power of two splits, as RFC 6962 says, at the largest power
//! of two below it), so proofs for any earlier size come from the same rows.
//! Nothing here does I/O: a [`NodeSource`] hands out the stored nodes.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A perfect subtree: leaves `index << level .. (index + 1) << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("the tree has no node at level {0} index {1}")]
    MissingNode(u32, u64),
    #[error("leaf index {index} is not below tree size {size}")]
    LeafOutOfRange { index: u64, size: u64 },
    #[error("tree size {from} is not at most {to}")]
    BadRange { from: u64, to: u64 },
}

/// Where proofs find stored perfect subtrees.
pub trait NodeSource {
    fn node(&self, id: NodeId) -> Result<Hash, MerkleError>;
}

impl NodeSource for std::collections::HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Result<Hash, MerkleError> {
        self.get(&id)
            .copied()
            .ok_or(MerkleError::MissingNode(id.level, id.index))
    }
}

/// A source that answers zeros and remembers what was asked: run a proof
/// through it to learn which nodes to load, load them in one query, then run
/// it again over the loaded map (which nodes a proof needs does not depend
/// on their hashes).
#[derive(Default)]
pub struct Recorder(std::cell::RefCell<std::collections::BTreeSet<NodeId>>);

impl Recorder {
    pub fn into_ids(self) -> Vec<NodeId> {
        self.0.into_inner().into_iter().collect()
    }
}

impl NodeSource for Recorder {
    fn node(&self, id: NodeId) -> Result<Hash, MerkleError> {
        self.0.borrow_mut().insert(id);
        Ok([0; 32])
    }
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf of a log event: the leaf hash over its per-stream `hash`,
/// hex-decoded. `None` if the text is not hex.
pub fn event_leaf(event_hash_hex: &str) -> Option<Hash> {
    hex::decode(event_hash_hex).ok().map(|b| leaf_hash(&b))
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `lo..hi`, where `lo` is a multiple of the largest
/// power of two not above `hi - lo` (true of every subtree RFC 6962 names).
pub fn subtree<S: NodeSource + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, MerkleError> {
    let n = hi - lo;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return src.node(NodeId {
            level,
            index: lo >> level,
        });
    }
    let k = split(n);
    Ok(node_hash(
        &subtree(src, lo, lo + k)?,
        &subtree(src, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, MerkleError> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree(src, 0, size)
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962
/// §2.1.1), leaf side first.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::LeafOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, lo, lo + k, out)?;
        out.push(subtree(src, lo + k, hi)?);
    } else {
        path(src, m - k, lo + k, hi, out)?;
        out.push(subtree(src, lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof between tree sizes `from` and `to` (RFC 6962
/// §2.1.2); empty when `from` is 0 or equals `to`.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if from > to {
        return Err(MerkleError::BadRange { from, to });
    }
    let mut out = Vec::new();
    if from == 0 || from == to {
        return Ok(out);
    }
    subproof(src, from, 0, to, true, &mut out)?;
    Ok(out)
}

fn subproof<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(subtree(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(subtree(src, lo, lo + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks a consistency proof between `from` (root `from_root`) and `to`
/// (root `to_root`) (RFC 9162 §2.1.4.2). Size 0 is consistent with anything.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from > to {
        return false;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        nodes.push(*from_root);
    }
    nodes.extend_from_slice(proof);
    let Some((first, rest)) = nodes.split_first() else {
        return false;
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *from_root && sr == *to_root && s == 0
}

/// The compact frontier of a growing tree: for each set bit of its size,
/// the perfect subtree on the right edge at that level. Appending a leaf
/// yields the perfect nodes it completes, which the appender stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// By level; `Some` where bit `level` of `size` is set.
    levels: Vec<Option<Hash>>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the tree of `size` leaves, from stored nodes.
    pub fn load<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, MerkleError> {
        let mut levels = Vec::new();
        for level in 0..64 - size.leading_zeros() {
            if size >> level & 1 == 1 {
                let node = src.node(NodeId {
                    level,
                    index: (size >> level) - 1,
                })?;
                levels.resize(level as usize + 1, None);
                levels[level as usize] = Some(node);
            }
        }
        Ok(Self { size, levels })
    }

    /// The ids of the nodes [`load`](Self::load) reads for `size`.
    pub fn ids(size: u64) -> Vec<NodeId> {
        (0..64 - size.leading_zeros())
            .filter(|l| size >> l & 1 == 1)
            .map(|level| NodeId {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; answers the perfect nodes completed by it, the
    /// leaf itself first.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut out = vec![(
            NodeId {
                level: 0,
                index: self.size,
            },
            leaf,
        )];
        let mut cur = leaf;
        let mut index = self.size;
        let mut level = 0usize;
        while index & 1 == 1 {
            let left = self.levels.get_mut(level).and_then(Option::take);
            let Some(left) = left else { break };
            cur = node_hash(&left, &cur);
            level += 1;
            index >>= 1;
            out.push((
                NodeId {
                    level: level as u32,
                    index,
                },
                cur,
            ));
        }
        if self.levels.len() <= level {
            self.levels.resize(level + 1, None);
        }
        self.levels[level] = Some(cur);
        self.size += 1;
        out
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for h in self.levels.iter().flatten() {
            acc = Some(match acc {
                None => *h,
                Some(r) => node_hash(h, &r),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 6962 MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, HashMap<NodeId, Hash>, Frontier) {
        let mut f = Frontier::new();
        let mut store = HashMap::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            for (id, h) in f.push(l) {
                assert!(store.insert(id, h).is_none(), "node {id:?} stored twice");
            }
        }
        (leaves, store, f)
    }

    fn hx(h: &Hash) -> String {
        hex::encode(h)
    }

    /// The test vectors of Certificate Transparency's reference
    /// implementation (merkle_tree_test): roots of the first 1..=8 inputs.
    #[test]
    fn roots_match_the_rfc_6962_reference_vectors() {
        let inputs = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        assert_eq!(
            hx(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut f = Frontier::new();
        let mut store = HashMap::new();
        for (i, input) in inputs.iter().enumerate() {
            let bytes = hex::decode(input).unwrap();
            store.extend(f.push(leaf_hash(&bytes)));
            assert_eq!(hx(&f.root()), roots[i], "frontier root of {}", i + 1);
            assert_eq!(
                hx(&root(&store, i as u64 + 1).unwrap()),
                roots[i],
                "stored root of {}",
                i + 1
            );
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let (leaves, store, _) = build(37);
        for size in 1..=37u64 {
            let r = mth(&leaves[..size as usize]);
            assert_eq!(root(&store, size).unwrap(), r);
            for i in 0..size {
                let p = inclusion_proof(&store, i, size).unwrap();
                assert!(verify_inclusion(i, size, &leaves[i as usize], &p, &r));
                let other = leaves[((i + 1) % 37) as usize];
                assert!(
                    !verify_inclusion(i, size, &other, &p, &r) || size == 1 && other == leaves[0]
                );
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(i, size, &leaves[i as usize], &bad, &r));
                    assert!(!verify_inclusion(i, size, &leaves[i as usize], &p[1..], &r));
                }
            }
        }
        assert!(inclusion_proof(&store, 5, 5).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_fork_does_not() {
        let (leaves, store, _) = build(33);
        let (_, forked, _) = {
            let mut f = Frontier::new();
            let mut s = HashMap::new();
            for i in 0..33u64 {
                let l = if i == 20 {
                    leaf_hash(b"forged")
                } else {
                    leaf_hash(&i.to_be_bytes())
                };
                s.extend(f.push(l));
            }
            ((), s, f)
        };
        for to in 1..=33u64 {
            let to_root = mth(&leaves[..to as usize]);
            for from in 0..=to {
                let from_root = mth(&leaves[..from as usize]);
                let p = consistency_proof(&store, from, to).unwrap();
                assert!(
                    verify_consistency(from, to, &from_root, &to_root, &p),
                    "{from}->{to}"
                );
                if from > 0 && from < to {
                    let mut bad = p.clone();
                    let last = bad.len() - 1;
                    bad[last][5] ^= 1;
                    assert!(!verify_consistency(from, to, &from_root, &to_root, &bad));
                }
                // A log that rewrote leaf 20 cannot prove consistency with
                // a checkpoint that included the original.
                if from > 20 && from < to {
                    let fr = root(&forked, to).unwrap();
                    let fp = consistency_proof(&forked, from, to).unwrap();
                    assert!(!verify_consistency(from, to, &from_root, &fr, &fp));
                }
            }
        }
        assert!(consistency_proof(&store, 4, 3).is_err());
    }

    #[test]
    fn a_frontier_loads_from_stored_nodes_and_carries_on() {
        let (_, mut store, full) = build(45);
        for cut in [0u64, 1, 2, 7, 8, 30, 44] {
            let mut f = Frontier::load(&store, cut).unwrap();
            assert_eq!(Frontier::ids(cut).len(), cut.count_ones() as usize);
            for i in cut..45 {
                for (id, h) in f.push(leaf_hash(&i.to_be_bytes())) {
                    assert_eq!(store.get(&id), Some(&h));
                }
            }
            assert_eq!(f.root(), full.root());
        }
        store.remove(&NodeId {
            level: 0,
            index: 44,
        });
        assert_eq!(
            Frontier::load(&store, 45),
            Err(MerkleError::MissingNode(0, 44))
        );
    }

    #[test]
    fn the_recorder_names_exactly_the_nodes_a_proof_reads() {
        let (leaves, store, _) = build(100);
        let rec = Recorder::default();
        inclusion_proof(&rec, 41, 97).unwrap();
        let ids = rec.into_ids();
        let sub: HashMap<NodeId, Hash> = ids.iter().map(|id| (*id, store[id])).collect();
        let p = inclusion_proof(&sub, 41, 97).unwrap();
        assert!(verify_inclusion(
            41,
            97,
            &leaves[41],
            &p,
            &mth(&leaves[..97])
        ));
    }

    #[test]
    fn an_event_leaf_is_over_the_decoded_hash() {
        let h = "00ff";
        assert_eq!(event_leaf(h), Some(leaf_hash(&[0, 255])));
        assert_eq!(event_leaf("zz"), None);
    }
}
