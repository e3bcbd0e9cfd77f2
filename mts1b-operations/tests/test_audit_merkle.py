"""RFC 6962 trees: roots, inclusion and consistency proofs against a direct reading of the RFC,
and proofs that must fail (wrong leaf, wrong index, padded, cut short, wrong root)."""

from __future__ import annotations

import hashlib

import pytest
from mts1b_operations.audit.errors import AuditError
from mts1b_operations.audit.merkle import (
    CompactTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def mth(entries: list[bytes]) -> bytes:
    """RFC 6962 2.1 as written, over the entries themselves."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


ENTRIES = [f"entry-{i}".encode() for i in range(40)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def test_known_vectors() -> None:
    # RFC 6962's empty-tree root and a one- and two-leaf tree computed by hand.
    assert tree_root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert tree_root([leaf_hash(b"")]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    two = node_hash(leaf_hash(b"a"), leaf_hash(b"b"))
    assert tree_root([leaf_hash(b"a"), leaf_hash(b"b")]) == two


def test_roots_match_the_rfc_for_every_size() -> None:
    compact = CompactTree()
    for n in range(len(ENTRIES) + 1):
        assert tree_root(LEAVES[:n]) == mth(ENTRIES[:n]), n
        assert compact.root() == mth(ENTRIES[:n]) and compact.size == n
        if n < len(ENTRIES):
            compact.append(LEAVES[n])


@pytest.mark.parametrize("height", [0, 1, 2, 3])
def test_a_subtree_appended_whole_is_its_leaves_appended_one_by_one(height: int) -> None:
    """How ``audit verify`` joins the second process's blocks: after any prefix whose size the
    block divides, the block's root appended whole gives the root of the leaves appended."""
    block = 1 << height
    for prefix in range(0, 24 + 1, block):
        whole = CompactTree()
        for leaf in LEAVES[:prefix]:
            whole.append(leaf)
        whole.append_subtree(tree_root(LEAVES[prefix:prefix + block]), height)
        assert whole.size == prefix + block
        assert whole.root() == mth(ENTRIES[:prefix + block]), (prefix, height)


def test_a_subtree_cannot_start_inside_a_block() -> None:
    tree = CompactTree()
    for leaf in LEAVES[:3]:
        tree.append(leaf)
    with pytest.raises(AuditError, match="cannot start at leaf 3"):
        tree.append_subtree(tree_root(LEAVES[3:5]), 1)
    assert tree.size == 3 and tree.root() == mth(ENTRIES[:3])


def test_every_inclusion_proof_verifies_and_tampered_ones_fail() -> None:
    for size in range(1, 24):
        root = mth(ENTRIES[:size])
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, root)
            assert not verify_inclusion(leaf_hash(b"forged"), index, size, proof, root)
            assert not verify_inclusion(LEAVES[index], index, size, [*proof, LEAVES[0]], root)
            if proof:
                assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
                assert not verify_inclusion(LEAVES[index], index ^ 1, size, proof, root) or (
                    (index ^ 1) >= size)
            assert not verify_inclusion(LEAVES[index], index, size, proof, leaf_hash(b"x"))
    with pytest.raises(AuditError, match="no leaf 5 in a tree of 5"):
        inclusion_proof(LEAVES, 5, 5)


def test_every_consistency_proof_verifies_and_tampered_ones_fail() -> None:
    for new in range(1, 24):
        for old in range(1, new + 1):
            proof = consistency_proof(LEAVES, old, new)
            old_root, new_root = mth(ENTRIES[:old]), mth(ENTRIES[:new])
            assert verify_consistency(old, new, old_root, new_root, proof), (old, new)
            assert not verify_consistency(old, new, mth([b"x", *ENTRIES[1:old]]), new_root,
                                          proof)
            if old < new:
                assert not verify_consistency(old, new, old_root, mth(ENTRIES[1:new + 1]),
                                              proof)
                assert not verify_consistency(old, new, old_root, new_root, [*proof, LEAVES[0]])
                assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    with pytest.raises(AuditError, match="no consistency between sizes 0 and 3"):
        consistency_proof(LEAVES, 0, 3)
