"""RFC 6962 Merkle trees over the chain's entries: roots, inclusion and consistency proofs.

Why a Merkle tree besides the hash chain: the chain shows that no link was changed, but to
check one entry a reader must replay every hash before it, and a signed chain head says
nothing about *which* history it ends. A Merkle root signed at checkpoints lets anyone prove
one entry belongs to a checkpointed history with log2(n) hashes (inclusion), and that a later
checkpoint only appended to an earlier one (consistency), as Certificate Transparency logs do.

The definitions are RFC 6962 section 2.1 (kept by RFC 9162 section 2.1): leaf hash
SHA-256(0x00 || entry), node hash SHA-256(0x01 || left || right), the tree of n leaves split
at the largest power of two below n. The verifiers are RFC 9162's algorithms (2.1.3.2 and
2.1.4.2), which check a proof's length exactly, so a proof padded or cut short fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mts1b_operations.audit.errors import AuditError

__all__ = ["CompactTree", "consistency_proof", "inclusion_proof", "leaf_hash", "node_hash",
           "tree_root", "verify_consistency", "verify_inclusion"]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of leaf hashes ``leaves`` (the empty tree's root is SHA-256 of nothing)."""
    if not leaves:
        return EMPTY_ROOT
    compact = CompactTree()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


def _subtree(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_subtree(leaves, lo, lo + k), _subtree(leaves, lo + k, hi))


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf ``index`` in the tree of the first
    ``size`` leaves."""
    if not 0 <= index < size <= len(leaves):
        raise AuditError(f"no leaf {index} in a tree of {size} (the chain has {len(leaves)})",
                         index=index, size=size)
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_subtree(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_subtree(leaves, lo, lo + k))
            lo = lo + k
    return path[::-1]


def consistency_proof(leaves: Sequence[bytes], old: int, new: int) -> list[bytes]:
    """PROOF(old, D[new]): why the tree of the first ``new`` leaves extends that of ``old``."""
    if not 0 < old <= new <= len(leaves):
        raise AuditError(f"no consistency between sizes {old} and {new} (the chain has "
                         f"{len(leaves)})", old=old, new=new)
    return _subproof(leaves, old, 0, new, True)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, complete: bool
              ) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [_subtree(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, m, lo, lo + k, complete), _subtree(leaves, lo + k, hi)]
    return [*_subproof(leaves, m - k, lo + k, hi, False), _subtree(leaves, lo, lo + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` put ``leaf`` at ``index`` of the tree ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show the tree ``new_root`` (size ``new``) extends
    ``old_root`` (size ``old``)?"""
    if not 0 < old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class CompactTree:
    """The roots of the perfect subtrees a growing tree's leaves make, left to right.

    Why: the recorder checkpoints every thousand entries; recomputing the root of a million
    leaves each time would cost a million hashes, while appending to the compact form costs
    at most log2(n) and its root another log2(n).
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self.size = 0
        # the root of each perfect subtree, tallest first: their heights are the set bits of
        # ``size``, so a new leaf merges with as many of them as ``size`` has trailing ones
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        # append_subtree(leaf, 0) without its check: verify calls this a million times, and
        # going through the general one costs it about 0.25 s more
        node, n, stack = leaf, self.size, self._stack
        while n & 1:
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            n >>= 1
        stack.append(node)
        self.size += 1

    def append_subtree(self, root: bytes, height: int) -> None:
        """Append ``2 ** height`` leaves at once, given the root of their perfect subtree;
        the tree's size must be a multiple of that count (the subtree is then one of the
        tree's own). The same as appending the leaves one by one, at the cost of one."""
        if self.size % (1 << height):
            raise AuditError(f"a subtree of 2**{height} leaves cannot start at leaf "
                             f"{self.size}", size=self.size, height=height)
        node, n, stack = root, self.size >> height, self._stack
        while n & 1:
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            n >>= 1
        stack.append(node)
        self.size += 1 << height

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node
