//! The Merkle tree over the audit records (R-AUD-4), RFC 9162 §2.1.
//!
//! The hash chain ([`crate::verify`]) shows a record was edited, removed or
//! reordered. It cannot show that the newest records were cut off, or that a
//! different history was rebuilt from some record on: both leave a valid chain.
//! A Merkle tree with signed checkpoints can: a checkpoint (size, root) that an
//! auditor, a TSA or a device has seen must stay a prefix of every later tree
//! (consistency proof), and every record must be in the tree (inclusion proof).
//!
//! Decided here:
//! - Leaf `i` (0-based) is record `seq = i + 1`; its leaf input is the 32 bytes
//!   of the record's chain hash (which commits to every field). Hashing is
//!   RFC 9162's: leaf = SHA-256(0x00 || input), node = SHA-256(0x01 || l || r).
//! - The centre stores every *complete* subtree as a node `(level, index)`
//!   covering leaves `[index·2^level, (index+1)·2^level)`, written in the same
//!   transaction as the record ([`Append`]). Roots and proofs of any size are
//!   then a few node reads (O(log n)), on SQLite as on PostgreSQL.
//! - Proofs are generated here from stored nodes (RFC 9162 §2.1.3.1 PATH and
//!   §2.1.4.1 SUBPROOF), and *verified with the `ct-merkle` crate*, an
//!   independent, maintained implementation of the same RFC. We do not use
//!   ct-merkle's tree itself: it keeps every leaf and node in memory in its own
//!   layout, while ours must live in database rows written atomically with the
//!   record they hash (and shared by replicas). The property tests check that our
//!   roots and proofs are byte-identical to ct-merkle's for every size.
//!
//! No I/O: [`Nodes`] is how the caller supplies stored nodes.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Longest proof we accept: a tree of 2^63 leaves has paths of 63 nodes.
pub const MAX_PROOF_HASHES: usize = 64;

pub fn leaf_hash(input: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(input);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The leaf input of an audit record: its chain hash as bytes. `None` when the
/// stored hash is not 64 hex digits (a damaged row: the chain check names it).
pub fn record_leaf_input(record_hash_hex: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(record_hash_hex, &mut out).ok()?;
    Some(out)
}

/// Where a complete subtree sits: `level` 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// Stored complete-subtree hashes. `None`: not stored (a damaged store).
pub trait Nodes {
    fn node(&mut self, id: NodeId) -> Option<Hash>;
}

impl<F: FnMut(NodeId) -> Option<Hash>> Nodes for F {
    fn node(&mut self, id: NodeId) -> Option<Hash> {
        self(id)
    }
}

/// A proof or root could not be computed from the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("the audit tree store lacks node (level {}, index {}): the tree rows are damaged or missing", .0.level, .0.index)]
    MissingNode(NodeId),
    #[error("leaf {index} is not in a tree of {size} records")]
    OutOfRange { index: u64, size: u64 },
    #[error("a tree of {new} records cannot be checked against a larger one of {old}")]
    OldLarger { old: u64, new: u64 },
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 MTH of leaves `[start, start + size)`, size >= 1, where `start`
/// is a multiple of the next power of two >= size (true of every range the
/// RFC's recursion visits), so the left part is always one stored node.
fn mth(nodes: &mut dyn Nodes, start: u64, size: u64) -> Result<Hash, TreeError> {
    if size.is_power_of_two() {
        let level = size.trailing_zeros();
        let id = NodeId {
            level,
            index: start >> level,
        };
        return nodes.node(id).ok_or(TreeError::MissingNode(id));
    }
    let k = split(size);
    let left = mth(nodes, start, k)?;
    let right = mth(nodes, start + k, size - k)?;
    Ok(node_hash(&left, &right))
}

/// Root of the first `size` leaves.
pub fn root(nodes: &mut dyn Nodes, size: u64) -> Result<Hash, TreeError> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    mth(nodes, 0, size)
}

/// Inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in the tree of `size`.
pub fn inclusion_proof(
    nodes: &mut dyn Nodes,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(
    nodes: &mut dyn Nodes,
    m: u64,
    start: u64,
    size: u64,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if size <= 1 {
        return Ok(());
    }
    let k = split(size);
    if m < k {
        path(nodes, m, start, k, out)?;
        out.push(mth(nodes, start + k, size - k)?);
    } else {
        path(nodes, m - k, start + k, size - k, out)?;
        out.push(mth(nodes, start, k)?);
    }
    Ok(())
}

/// Consistency proof (RFC 9162 §2.1.4.1) that the tree of `old` is a prefix of
/// the tree of `new`. Empty when `old` is 0 or equal to `new`.
pub fn consistency_proof(
    nodes: &mut dyn Nodes,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, TreeError> {
    if old > new {
        return Err(TreeError::OldLarger { old, new });
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    nodes: &mut dyn Nodes,
    m: u64,
    start: u64,
    size: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if m == size {
        if !whole {
            out.push(mth(nodes, start, size)?);
        }
        return Ok(());
    }
    let k = split(size);
    if m <= k {
        subproof(nodes, m, start, k, whole, out)?;
        out.push(mth(nodes, start + k, size - k)?);
    } else {
        subproof(nodes, m - k, start + k, size - k, false, out)?;
        out.push(mth(nodes, start, k)?);
    }
    Ok(())
}

/// The nodes a computation reads, so a caller with an async store can fetch
/// them all first: run `f` against a recorder, fetch, run again against a map.
pub fn nodes_needed<T>(f: impl FnOnce(&mut dyn Nodes) -> T) -> Vec<NodeId> {
    let mut seen = Vec::new();
    let mut rec = |id: NodeId| {
        seen.push(id);
        Some([0u8; 32])
    };
    let _ = f(&mut rec);
    seen.sort();
    seen.dedup();
    seen
}

/// The node writes that appending leaf `index` (0-based) with `leaf` implies:
/// the leaf itself, then each subtree it completes, bottom up. `left_sibling`
/// reads the stored left neighbour of a completed subtree's right half.
pub struct Append;

impl Append {
    /// Which stored nodes appending leaf `index` needs (the left siblings).
    pub fn reads(index: u64) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut level = 0;
        let mut i = index;
        while i & 1 == 1 {
            out.push(NodeId {
                level,
                index: i - 1,
            });
            level += 1;
            i >>= 1;
        }
        out
    }

    /// The nodes to store, given the left siblings listed by [`Append::reads`].
    pub fn writes(
        nodes: &mut dyn Nodes,
        index: u64,
        leaf: Hash,
    ) -> Result<Vec<(NodeId, Hash)>, TreeError> {
        let mut out = vec![(NodeId { level: 0, index }, leaf)];
        let mut cur = leaf;
        let mut level = 0;
        let mut i = index;
        while i & 1 == 1 {
            let id = NodeId {
                level,
                index: i - 1,
            };
            let left = nodes.node(id).ok_or(TreeError::MissingNode(id))?;
            cur = node_hash(&left, &cur);
            level += 1;
            i >>= 1;
            out.push((NodeId { level, index: i }, cur));
        }
        Ok(out)
    }
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the inclusion proof does not lead to the checkpoint's root: record {seq} is not in that tree as it stands")]
    NotIncluded { seq: u64 },
    #[error("the tree of {new} records does not extend the tree of {old} records: the log was truncated or rewritten (a fork)")]
    Inconsistent { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes for these tree sizes")]
    Malformed,
    #[error("record {index} is outside a tree of {size} records")]
    OutOfRange { index: u64, size: u64 },
}

impl ProofError {
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::NotIncluded { .. } => "not_included",
            ProofError::Inconsistent { .. } => "inconsistent",
            ProofError::Malformed => "malformed_proof",
            ProofError::OutOfRange { .. } => "out_of_range",
        }
    }
}

fn digests(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flatten().copied().collect()
}

/// Verify that `leaf_input` is leaf `index` of the tree (`size`, `root`).
/// Verification is ct-merkle's (see the module docs).
pub fn verify_inclusion(
    leaf_input: &[u8],
    index: u64,
    size: u64,
    root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    use ct_merkle::{InclusionProof, InclusionVerifError, RootHash};
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Malformed);
    }
    let root = RootHash::<Sha256>::new((*root).into(), size);
    let proof = InclusionProof::<Sha256>::from_bytes(digests(proof));
    root.verify_inclusion(&leaf_input, index, &proof)
        .map_err(|e| match e {
            InclusionVerifError::MalformedProof => ProofError::Malformed,
            InclusionVerifError::IndexOutOfRange | InclusionVerifError::TreeEmpty => {
                ProofError::OutOfRange { index, size }
            }
            _ => ProofError::NotIncluded { seq: index + 1 },
        })
}

/// Verify that the tree (`old`, `old_root`) is a prefix of (`new`, `new_root`).
pub fn verify_consistency(
    old: u64,
    old_root: &Hash,
    new: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    use ct_merkle::{ConsistencyProof, ConsistencyVerifError, RootHash};
    let inconsistent = ProofError::Inconsistent { old, new };
    if old > new {
        return Err(inconsistent);
    }
    if old == 0 {
        // Every tree extends the empty one; its root is fixed.
        return match (proof.is_empty(), old_root == &EMPTY_ROOT) {
            (false, _) => Err(ProofError::Malformed),
            (true, true) => Ok(()),
            (true, false) => Err(inconsistent),
        };
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Malformed);
    }
    let new_r = RootHash::<Sha256>::new((*new_root).into(), new);
    let old_r = RootHash::<Sha256>::new((*old_root).into(), old);
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(digests(proof))
        .map_err(|_| ProofError::Malformed)?;
    new_r
        .verify_consistency(&old_r, &proof)
        .map_err(|e| match e {
            ConsistencyVerifError::MalformedProof => ProofError::Malformed,
            _ => inconsistent,
        })
}

/// An in-memory store of complete subtrees, for tests, benchmarks and the
/// offline checker (which rebuilds the tree from an export).
#[derive(Debug, Default, Clone)]
pub struct MemTree {
    /// `levels[l][i]`: node (l, i).
    levels: Vec<Vec<Hash>>,
}

impl MemTree {
    pub fn new() -> MemTree {
        MemTree::default()
    }

    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append a leaf given its input bytes.
    pub fn push(&mut self, leaf_input: &[u8]) {
        self.push_leaf_hash(leaf_hash(leaf_input));
    }

    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let index = self.len();
        let writes = Append::writes(&mut |id: NodeId| self.get(id), index, leaf)
            .expect("a MemTree holds every left sibling it wrote");
        for (id, h) in writes {
            let l = id.level as usize;
            if self.levels.len() <= l {
                self.levels.push(Vec::new());
            }
            self.levels[l].push(h);
        }
    }

    pub fn get(&self, id: NodeId) -> Option<Hash> {
        self.levels
            .get(id.level as usize)?
            .get(usize::try_from(id.index).ok()?)
            .copied()
    }

    /// A [`Nodes`] view that pretends the tree has only `size` leaves is not
    /// needed: stored nodes never change, so any size <= len() is answered.
    pub fn nodes(&self) -> impl FnMut(NodeId) -> Option<Hash> + '_ {
        move |id| self.get(id)
    }

    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        if size > self.len() {
            return Err(TreeError::OutOfRange {
                index: size,
                size: self.len(),
            });
        }
        root(&mut self.nodes(), size)
    }

    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        if size > self.len() {
            return Err(TreeError::OutOfRange { index, size });
        }
        inclusion_proof(&mut self.nodes(), index, size)
    }

    pub fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        if new > self.len() {
            return Err(TreeError::OutOfRange {
                index: new,
                size: self.len(),
            });
        }
        consistency_proof(&mut self.nodes(), old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    use proptest::prelude::*;

    /// The leaves of the RFC 6962 / transparency-dev reference vectors.
    const KAT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    /// Roots of the first 1..=8 of those leaves (RFC 6962 reference test data).
    const KAT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn kat_tree() -> MemTree {
        let mut t = MemTree::new();
        for l in KAT_LEAVES {
            t.push(&hex::decode(l).unwrap());
        }
        t
    }

    fn tree(n: u64) -> MemTree {
        let mut t = MemTree::new();
        for i in 0..n {
            t.push(&i.to_be_bytes());
        }
        t
    }

    #[test]
    fn rfc_known_answer_roots() {
        let t = kat_tree();
        assert_eq!(t.root(0).unwrap(), EMPTY_ROOT);
        assert_eq!(hex::encode(Sha256::digest(b"")), hex::encode(EMPTY_ROOT));
        for (i, want) in KAT_ROOTS.iter().enumerate() {
            assert_eq!(
                hex::encode(t.root(i as u64 + 1).unwrap()),
                *want,
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn rfc_known_answer_proofs() {
        // transparency-dev reference vectors: inclusion (size 8, leaf 5) and consistency 6 -> 8.
        let t = kat_tree();
        let p = t.inclusion(5, 8).unwrap();
        assert_eq!(
            hex::encode(p[0]),
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
        );
        let c = t.consistency(6, 8).unwrap();
        assert_eq!(
            hex::encode(c[0]),
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
        );
        let c = t.consistency(2, 5).unwrap();
        assert_eq!(
            hex::encode(c[0]),
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
        );
    }

    #[test]
    fn leaf_and_node_prefixes_differ() {
        // A leaf whose input is two hashes must not collide with their parent.
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_ne!(leaf_hash(&both), node_hash(&a, &b));
    }

    #[test]
    fn append_reads_are_the_left_siblings() {
        assert!(Append::reads(0).is_empty());
        assert_eq!(Append::reads(1), vec![NodeId { level: 0, index: 0 }]);
        assert_eq!(
            Append::reads(3),
            vec![NodeId { level: 0, index: 2 }, NodeId { level: 1, index: 0 }]
        );
        assert!(Append::reads(4).is_empty());
    }

    #[test]
    fn missing_node_is_an_error_not_a_panic() {
        let mut none = |_: NodeId| None;
        assert!(matches!(root(&mut none, 5), Err(TreeError::MissingNode(_))));
        assert!(inclusion_proof(&mut none, 7, 3).is_err());
        assert!(consistency_proof(&mut none, 5, 3).is_err());
    }

    #[test]
    fn nodes_needed_lists_what_a_proof_reads() {
        let t = tree(13);
        let ids = nodes_needed(|n| inclusion_proof(n, 4, 13));
        let map: std::collections::HashMap<NodeId, Hash> =
            ids.iter().map(|id| (*id, t.get(*id).unwrap())).collect();
        let p = inclusion_proof(&mut |id: NodeId| map.get(&id).copied(), 4, 13).unwrap();
        assert_eq!(p, t.inclusion(4, 13).unwrap());
    }

    #[test]
    fn empty_tree_consistency() {
        let t = tree(4);
        let r = t.root(4).unwrap();
        assert_eq!(verify_consistency(0, &EMPTY_ROOT, 4, &r, &[]), Ok(()));
        assert!(verify_consistency(0, &r, 4, &r, &[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Our roots and proofs equal ct-merkle's, and verify, for every size and leaf.
        #[test]
        fn proofs_match_ct_merkle_and_verify(n in 1u64..70) {
            let t = tree(n);
            let mut ct = MemoryBackedTree::<Sha256, [u8; 8]>::new();
            for i in 0..n {
                ct.push(i.to_be_bytes());
                let size = i + 1;
                let (ours, theirs) = (t.root(size).unwrap(), ct.root());
                prop_assert_eq!(ours.as_slice(), theirs.as_bytes().as_slice());
            }
            let root = t.root(n).unwrap();
            for i in 0..n {
                let p = t.inclusion(i, n).unwrap();
                prop_assert_eq!(digests(&p), ct.prove_inclusion(i as usize).as_bytes().to_vec());
                prop_assert_eq!(verify_inclusion(&i.to_be_bytes(), i, n, &root, &p), Ok(()));
            }
            for old in 1..=n {
                let p = t.consistency(old, n).unwrap();
                prop_assert_eq!(digests(&p), ct.prove_consistency((n - old) as usize).as_bytes().to_vec());
                let old_root = t.root(old).unwrap();
                prop_assert_eq!(verify_consistency(old, &old_root, n, &root, &p), Ok(()));
            }
        }

        /// Any change to a proof, a leaf, an index or a root fails verification.
        #[test]
        fn tampering_fails(n in 2u64..200, i in 0u64..200, old in 1u64..200, byte in 0usize..32, bit in 0u8..8, which in 0usize..8) {
            let i = i % n;
            let old = 1 + old % (n - 1); // 1..n-1: a real consistency proof
            let t = tree(n);
            let root = t.root(n).unwrap();
            let mut p = t.inclusion(i, n).unwrap();
            if !p.is_empty() {
                let k = which % p.len();
                p[k][byte] ^= 1 << bit;
                prop_assert!(verify_inclusion(&i.to_be_bytes(), i, n, &root, &p).is_err());
            }
            let p = t.inclusion(i, n).unwrap();
            let mut other = i.to_be_bytes();
            other[byte % 8] ^= 1 << bit;
            prop_assert!(verify_inclusion(&other, i, n, &root, &p).is_err());
            prop_assert!(verify_inclusion(&i.to_be_bytes(), (i + 1) % n, n, &root, &p).is_err() || n == 1);
            let mut bad_root = root;
            bad_root[byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(&i.to_be_bytes(), i, n, &bad_root, &p).is_err());

            let old_root = t.root(old).unwrap();
            let mut c = t.consistency(old, n).unwrap();
            let k = which % c.len();
            c[k][byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old, &old_root, n, &root, &c).is_err());
            let c = t.consistency(old, n).unwrap();
            prop_assert!(verify_consistency(old, &bad_root, n, &root, &c).is_err());
            prop_assert!(verify_consistency(old, &old_root, n, &bad_root, &c).is_err());
            let mut short = c.clone();
            short.pop();
            prop_assert!(verify_consistency(old, &old_root, n, &root, &short).is_err());
        }

        /// A fork: the same length, a different history from leaf m on, is
        /// inconsistent with every checkpoint taken after m.
        #[test]
        fn fork_is_inconsistent(n in 2u64..120, m in 0u64..120, seen in 1u64..120) {
            let m = m % n;
            let seen = (m + 1).max(1 + seen % n); // a checkpoint that covers leaf m
            let honest = tree(n);
            let mut fork = MemTree::new();
            for i in 0..n {
                if i < m { fork.push(&i.to_be_bytes()); } else { fork.push(&(i + 1_000_000).to_be_bytes()); }
            }
            let old_root = honest.root(seen).unwrap();
            let new_root = fork.root(n).unwrap();
            let p = fork.consistency(seen, n).unwrap();
            prop_assert!(verify_consistency(seen, &old_root, n, &new_root, &p).is_err());
        }

        /// Truncation: a smaller tree is never consistent as the "newer" one.
        #[test]
        fn truncation_is_inconsistent(n in 2u64..120, k in 1u64..120) {
            let k = 1 + k % (n - 1);
            let t = tree(n);
            let r = t.root(n).unwrap();
            let short = t.root(n - k).unwrap();
            prop_assert!(verify_consistency(n, &r, n - k, &short, &[]).is_err());
        }
    }
}
