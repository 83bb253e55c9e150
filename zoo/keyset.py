"""A set of input names in 16 bytes each: what a resumed run has done already, for any number of inputs.

A Python set of one million file paths holds about 130 MB; the same names as 128-bit digests in one sorted
array hold 16 MB. Two different names share a digest with probability about n^2 / 2^129: never, in practice.
"""

import hashlib

import numpy as np

DIGEST = np.dtype("V16")


def digest(key):
    # surrogatepass: a name decoded from undecodable file-name bytes still has one digest
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=DIGEST.itemsize).digest()


class KeySet:
    """The distinct strings of `keys` (any iterable, read once), for `in` and `len`."""

    def __init__(self, keys=()):
        packed = bytearray()
        for key in keys:
            packed += digest(key)
        digests = np.frombuffer(packed, dtype=DIGEST)
        digests.sort()  # in place: np.unique would hold two more copies at its peak
        first = np.concatenate(([True], digests[1:] != digests[:-1]))
        self.digests = digests if first.all() else digests[first]  # a copy only where names repeat

    def __len__(self):
        return len(self.digests)

    def __contains__(self, key):
        wanted = np.frombuffer(digest(key), dtype=DIGEST)
        at = np.searchsorted(self.digests, wanted)[0]
        return bool(at < len(self.digests) and self.digests[at] == wanted[0])

    def __repr__(self):
        return f"<KeySet of {len(self)} names>"
