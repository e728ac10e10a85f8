"""Token families in the authorization server's store, on SQLite and PostgreSQL.

Every token issued from one authorization code — and every token refreshed from those —
is one family. A rotated refresh token presented again, a refresh token revoked
(RFC 7009) or two requests racing to rotate the same refresh token end the whole family,
and nothing else.
"""

from __future__ import annotations

import threading
from typing import Any

from hw_fhir.smart.authstore import AuthStore, hash_secret


def _issue(auth: AuthStore, access: str, refresh: str, *, code: str | None = None,
           family: str | None = None) -> None:
    auth.save_token(access_token=access, refresh_token=refresh, client_id="app", scope="patient/*.rs",
                    context={"patient": "p1"}, expires_in=3600, refresh_expires_in=86400, code=code,
                    family=family)


def _rotate(auth: AuthStore, old_refresh: str, access: str, refresh: str) -> None:
    record = auth.find_refresh(old_refresh)
    assert record is not None
    _issue(auth, access, refresh, family=record.family)
    auth.retire_refresh(old_refresh)


def test_reuse_of_a_rotated_refresh_token_revokes_only_its_family(sql_store: Any) -> None:
    auth = AuthStore(sql_store)
    _issue(auth, "a1", "r1", code="code-1")
    _issue(auth, "other-a", "other-r", code="code-2")
    _rotate(auth, "r1", "a2", "r2")
    assert auth.find_token("a2").family == hash_secret("code-1")  # type: ignore[union-attr]
    assert auth.introspect("a2") is not None
    assert auth.find_refresh("r1") is None  # replay of the rotated token
    assert auth.introspect("a1") is None and auth.introspect("a2") is None
    assert auth.find_refresh("r2") is None
    assert auth.introspect("other-a") is not None and auth.find_refresh("other-r") is not None


def test_racing_rotations_of_one_refresh_token_end_the_family(sql_store: Any) -> None:
    auth = AuthStore(sql_store)
    _issue(auth, "a1", "r1", code="code-1")
    first = auth.find_refresh("r1")
    second = auth.find_refresh("r1")
    assert first is not None and second is not None  # both requests got past the lookup
    barrier = threading.Barrier(2)

    def rotate(n: int) -> None:
        _issue(auth, f"new-a{n}", f"new-r{n}", family=first.family)
        barrier.wait()
        auth.retire_refresh("r1")

    threads = [threading.Thread(target=rotate, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert auth.introspect("new-a1") is None and auth.introspect("new-a2") is None
    assert auth.find_refresh("new-r1") is None and auth.find_refresh("new-r2") is None


def test_revoking_one_access_token_leaves_the_rest_of_the_family(sql_store: Any) -> None:
    auth = AuthStore(sql_store)
    _issue(auth, "a1", "r1", code="code-1")
    _rotate(auth, "r1", "a2", "r2")
    auth.revoke_record(auth.find_token("a1"))  # type: ignore[arg-type]
    assert auth.introspect("a1") is None
    assert auth.introspect("a2") is not None and auth.find_refresh("r2") is not None
    auth.revoke_family(auth.find_token("r2", "refresh_token"))  # type: ignore[arg-type]
    assert auth.introspect("a2") is None
