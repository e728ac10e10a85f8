"""Signing keys kept in the instance folder, and JWKS documents.

A key file is created once (atomically, so several worker processes agree on
one key) and read afterwards. Keys are joserfc keys; their ``kid`` is the
RFC 7638 thumbprint.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, cast

import orjson
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key

from ..errors import KeyFileUnreadable, UnsupportedKeyAlgorithm

__all__ = ["load_or_create_key", "public_jwks", "generate_key", "key_set"]

Key = Any  # a joserfc RSAKey or ECKey


def generate_key(alg: str) -> Key:
    """Generate a private key for ``alg`` (RS256, RS384, ES384...), with ``kid``, ``alg`` and ``use``."""
    key: RSAKey | ECKey
    if alg.startswith(("RS", "PS")):
        key = RSAKey.generate_key(2048, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    elif alg == "ES384":
        key = ECKey.generate_key("P-384", private=True)
    else:
        raise UnsupportedKeyAlgorithm(f"No key type for alg {alg!r}")
    data = key.as_dict(private=True)
    data.update(kid=key.thumbprint(), alg=alg, use="sig")
    return import_key(data)


def load_or_create_key(path: Path, alg: str) -> Key:
    """Return the private key stored at ``path``, creating it (mode 600) when missing."""
    path = Path(path)
    for _ in range(50):
        if path.exists():
            raw = path.read_bytes()
            if raw.strip():
                return import_key(orjson.loads(raw))
            time.sleep(0.05)  # another process is writing it
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        key = generate_key(alg)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, orjson.dumps(key.as_dict(private=True)))
            os.close(fd)
            try:
                os.link(tmp, path)  # atomic; fails when another process won the race
            except FileExistsError:
                continue
            return key
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise KeyFileUnreadable(f"Cannot read the key file {path}")


def public_jwks(keys: Iterable[Key]) -> dict[str, Any]:
    """Return the public JWKS of some private keys."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def key_set(jwks: dict[str, Any]) -> KeySet:
    """Import a JWKS document as a joserfc KeySet."""
    return KeySet.import_key_set(cast(Any, jwks))
