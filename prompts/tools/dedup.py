"""Exact and near-duplicate prompts, found deterministically (the hard filters of ``bppo data curate``).

Exact: equal after normalisation (Unicode NFKC, lowercase, whitespace collapsed).
Near: the same numbers (as a multiset) and word-3-gram (shingle) Jaccard similarity >= a
threshold. In a math prompt a changed number is a different problem however alike the words:
on 10,000 synthetic prompts, Jaccard alone (0.8) took "a rectangle with sides 48 and 49" for a
copy of "... sides 48 and 29", 416 times. Candidate pairs come from
MinHash with locality-sensitive banding (so 10,000 prompts are not 50 million pair
comparisons); every candidate is then checked with the exact Jaccard of its shingle sets,
so nothing is dropped on an estimate. Hashes are blake2b mixed with fixed salts,
never Python's per-process salted ``hash()``: the same prompts give the same result in every
process.

In both filters the first occurrence (in prompt-set order) is kept and the later ones are
dropped: a duplicate of a dropped prompt is dropped only if it is close to a kept one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict

import numpy as np

from prompts.tools.complexity import words

SHINGLE_WORDS = 3
NUM_PERMUTATIONS = 128
_PERMUTATION_SEED = 20_240_613  # fixed: the dedup result must not depend on --seed
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalise(text: str) -> str:
    """The text exact duplicates are compared by: NFKC, lowercase, runs of whitespace -> one
    space, stripped. Punctuation stays: in a math question "2.5" and "25" differ."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def exact_duplicates(texts: list[str]) -> list[int]:
    """Indices of texts equal (after ``normalise``) to an earlier text."""
    seen: set[str] = set()
    duplicates = []
    for index, text in enumerate(texts):
        key = normalise(text)
        if key in seen:
            duplicates.append(index)
        seen.add(key)
    return duplicates


def shingles(text: str, size: int = SHINGLE_WORDS) -> frozenset[str]:
    """The word ``size``-grams of ``text`` (words as the type-token ratio counts them); a text
    shorter than ``size`` words is one shingle of all its words."""
    tokens = words(unicodedata.normalize("NFKC", text))
    if len(tokens) <= size:
        return frozenset([" ".join(tokens)])
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


def numbers(text: str) -> tuple[str, ...]:
    """The numbers in ``text``, sorted (a reworded question may name them in another order)."""
    return tuple(sorted(_NUMBER.findall(unicodedata.normalize("NFKC", text))))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixed map of uint64 (wrapping arithmetic)."""
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def minhash_signatures(shingle_sets: list[frozenset[str]]) -> np.ndarray:
    """[N, NUM_PERMUTATIONS] uint64: per hash function, the minimum hash over a text's shingles.
    Two texts agree at a position with probability equal to their Jaccard similarity. Hash
    function i is mix64(blake2b(shingle) XOR salt_i): independent-looking orderings (a linear
    a*x+b mod p over 32-bit x wraps too few times to reorder, and biases the estimate)."""
    salts = (
        np.random.default_rng(_PERMUTATION_SEED)
        .integers(0, np.iinfo(np.int64).max, NUM_PERMUTATIONS, dtype=np.int64)
        .astype(np.uint64)
    )
    signatures = np.empty((len(shingle_sets), NUM_PERMUTATIONS), dtype=np.uint64)
    for row, items in enumerate(shingle_sets):
        hashes = np.array(
            [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in sorted(items)],
            dtype=np.uint64,
        )
        signatures[row] = _mix64(hashes[:, None] ^ salts[None, :]).min(axis=0)
    return signatures


def bands_for(threshold: float) -> int:
    """Bands of the LSH split of NUM_PERMUTATIONS: the fewest (fewest candidates to check) that
    still make a pair at exactly ``threshold`` a candidate with probability >= 0.99; pairs
    above the threshold are candidates with higher probability still."""
    for bands in (8, 16, 32, 64, 128):
        rows = NUM_PERMUTATIONS // bands
        if 1 - (1 - threshold**rows) ** bands >= 0.99:
            return bands
    return NUM_PERMUTATIONS


def near_duplicates(texts: list[str], threshold: float, *, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Indices of texts with the same ``numbers`` as an earlier kept text and a shingle Jaccard
    >= ``threshold`` with it. ``skip`` (e.g. the exact duplicates) takes no part: neither kept
    nor reported."""
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold {threshold}: expected 0 < threshold <= 1")
    indices = [i for i in range(len(texts)) if i not in skip]
    sets = [shingles(texts[i]) for i in indices]
    number_keys = [numbers(texts[i]) for i in indices]
    signatures = minhash_signatures(sets)
    bands = bands_for(threshold)
    rows = NUM_PERMUTATIONS // bands
    buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(bands)]
    duplicates = []
    for position, index in enumerate(indices):
        keys = [signatures[position, band * rows : (band + 1) * rows].tobytes() for band in range(bands)]
        candidates = sorted({kept for band, key in enumerate(keys) for kept in buckets[band].get(key, ())})
        if any(
            number_keys[kept] == number_keys[position] and jaccard(sets[position], sets[kept]) >= threshold
            for kept in candidates
        ):
            duplicates.append(index)
            continue
        for band, key in enumerate(keys):  # only kept texts are ever compared against
            buckets[band][key].append(position)
    return duplicates
