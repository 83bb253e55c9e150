"""KeySet: the names a resumed run skips, 16 bytes each."""

from zoo.keyset import KeySet


def test_membership_length_and_duplicates():
    names = [f"photos/{i:05d}.jpg" for i in range(5000)]
    done = KeySet(iter(names + names[:10]))  # any iterable, read once; a name written twice counts once
    assert len(done) == 5000 and all(name in done for name in names)
    assert "photos/05000.jpg" not in done and "" not in done and "photos/00001.JPG" not in done
    assert done.digests.nbytes == 16 * 5000


def test_empty_and_names_from_undecodable_bytes():
    assert len(KeySet()) == 0 and "anything" not in KeySet()
    odd = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a Latin-1 file name on a UTF-8 system
    done = KeySet([odd, "\u00e9t\u00e9.png", "a"])
    assert odd in done and "\u00e9t\u00e9.png" in done and "caf\u00e9.jpg" not in done
    assert not any(f"x{i}" in KeySet(["a"]) for i in range(50))  # digests falling before and after the only one
