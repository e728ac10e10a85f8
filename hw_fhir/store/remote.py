"""RemoteStore: the Store protocol against any FHIR R4 server over REST (``requests``).

Retries and what is never retried
---------------------------------
A request is retried (``retries`` times, exponential backoff with jitter,
``Retry-After`` honoured) on a connection error, a 429 or a 5xx answer *only
when repeating it cannot duplicate a write*:

* GET, PUT and DELETE are idempotent and always retried;
* a POST create **with** ``If-None-Exist`` (conditional create) is retried: a
  repeat finds the resource the first attempt made and answers 200;
* a transaction/batch Bundle is retried when every entry is a GET, PUT, DELETE
  or conditional (``ifNoneExist``) POST;
* a plain POST create (or a Bundle with one) is **never** retried after it may
  have reached the server (5xx, 429, a dropped connection, a read timeout): the
  server may have stored it, and a blind repeat would store it twice. It is
  retried only when the connection could not even be opened (refused, connect
  timeout), since then nothing was sent. Give such resources an identifier and
  use ``if_none_exist`` to make them safe to retry.

A ``Retry-After`` longer than ``max_retry_after`` ends the retries at once
(the error is raised; a durable outbox can come back later).

A 401 is answered once by asking the token provider again (with
``force_refresh=True`` when it accepts that keyword) and repeating the request;
the server refused it before doing anything, so this is safe for every method.

Nothing here logs tokens, query strings or resource contents: log lines carry
the method, the path, the status and the attempt number.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import orjson
import requests

from ..errors import (
    BusinessRuleError,
    Conflict,
    Forbidden,
    Gone,
    HwFhirError,
    InvalidInput,
    InvalidResource,
    InvalidSearch,
    Issue,
    NotFound,
    RemoteError,
    Unauthorized,
    VersionConflict,
)
from .base import HistoryResult, Params, SearchResult, Stored, WriteResult, as_params

__all__ = ["RemoteStore", "TokenProvider", "error_from_response", "issues_from_outcome"]

log = logging.getLogger("hw_fhir.store.remote")

#: A callable returning the current access token (``force_refresh=True`` optional).
TokenProvider = Callable[..., "str | None"]

FHIR_JSON = "application/fhir+json"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504, 507, 508, 509})
_RESOURCE_CODES = frozenset({"structure", "required", "value", "invariant", "code-invalid"})
_STATUS_TO_METHOD = {"201": "POST", "200": "PUT", "204": "DELETE"}


def issues_from_outcome(body: Any) -> list[Issue]:
    """Return the issues of an OperationOutcome dict (empty for anything else)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    out = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        message = (issue.get("diagnostics") or (issue.get("details") or {}).get("text")
                   or issue.get("code") or "error")
        where = issue.get("expression") or issue.get("location") or [None]
        out.append(Issue(str(message), code=str(issue.get("code") or "exception"),
                         severity=str(issue.get("severity") or "error"), expression=where[0]))
    return out


def _json_body(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def error_from_response(response: requests.Response, *, search: bool = False) -> HwFhirError:
    """Map an error answer to the hw_fhir.errors tree, keeping the server's issues."""
    status = response.status_code
    issues = issues_from_outcome(_json_body(response))
    path = urlsplit(response.request.url or "").path if response.request is not None else ""
    message = "; ".join(i.message for i in issues) or f"HTTP {status} {response.reason or ''}".strip()
    message = f"{response.request.method if response.request is not None else ''} {path}: {message}"
    exc: HwFhirError
    if status == 400:
        if search:
            exc = InvalidSearch(message, issues=issues or None)
        elif any(i.code in _RESOURCE_CODES for i in issues):
            exc = InvalidResource(message, issues=issues)
        else:
            exc = InvalidInput(message, issues=issues or None)
    elif status == 401:
        exc = Unauthorized(message, issues=issues or None)
    elif status == 403:
        exc = Forbidden(message, issues=issues or None)
    elif status == 404:
        exc = NotFound(message, issues=issues or None)
    elif status == 410:
        exc = Gone(message, issues=issues or None)
    elif status == 409:
        exc = Conflict(message, issues=issues or None)
    elif status == 412:
        exc = VersionConflict(message)
        if issues:
            exc.issues = issues
    elif status == 422:
        exc = BusinessRuleError(message, issues=issues or None)
    else:
        exc = RemoteError(message, issues=issues or None, response=response,
                          status=status if status >= 400 else None)
    return exc


def _accepts_force_refresh(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "force_refresh" or p.kind is p.VAR_KEYWORD for p in params)


def _never_sent(exc: requests.RequestException) -> bool:
    """Return True when the connection could not be opened, so the request never left."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    node: BaseException | None = exc
    for _ in range(8):  # requests wraps urllib3's MaxRetryError, which holds the reason
        if isinstance(node, (requests.ConnectTimeout, ConnectTimeoutError, NewConnectionError)):
            return True
        if node is None:
            return False
        first = node.args[0] if node.args and isinstance(node.args[0], BaseException) else None
        node = getattr(node, "reason", None) or first or node.__cause__
    return False


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _bundle_is_retry_safe(bundle: dict[str, Any]) -> bool:
    """Return True when repeating this Bundle cannot create anything twice."""
    for entry in bundle.get("entry") or []:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            return False
        method = str(request.get("method", "")).upper()
        if method == "POST" and not request.get("ifNoneExist"):
            return False
    return True


def _strip_etag(value: str) -> str:
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    return v.strip('"')


def _if_match(value: str) -> str:
    """Return an If-Match header value: ``3``, ``"3"`` and ``W/"3"`` all become ``W/"3"``."""
    return f'W/"{_strip_etag(value)}"'


def _type_id_from_url(url: str) -> tuple[str | None, str | None, str | None]:
    """Return (type, id, version) from ``[base/]Type/id[/_history/v]``."""
    path = [p for p in urlsplit(url).path.split("/") if p]
    version = None
    if len(path) >= 2 and path[-2] == "_history":
        version = path[-1]
        path = path[:-2]
    if len(path) >= 2 and path[-2][:1].isupper():
        return path[-2], path[-1], version
    return None, None, version


class RemoteStore:
    """The Store over a FHIR R4 REST server.

    ``token_provider`` is called before every request (so a refreshed token is
    used at once); ``timeout`` applies to connecting and to each read;
    ``retries`` and ``backoff`` (seconds, doubled per attempt, jittered) govern
    the retries described in the module docstring. A ``requests.Session`` is
    not guaranteed thread-safe: give each thread its own RemoteStore.
    """

    def __init__(self, base_url: str, *, token_provider: TokenProvider | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                 session: requests.Session | None = None, max_retry_after: float = 60.0,
                 max_backoff: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.max_backoff = max_backoff
        self._own_session = session is None
        self.session = session or requests.Session()
        self._force_kw = token_provider is not None and _accepts_force_refresh(token_provider)
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def __repr__(self) -> str:
        return f"RemoteStore({self.base_url!r})"

    def __enter__(self) -> "RemoteStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (when this store opened it)."""
        if self._own_session:
            self.session.close()

    # ------------------------------------------------------------- transport

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            if (parts.scheme, parts.netloc) != self._origin:
                raise RemoteError("The server sent a link to another origin; not following it "
                                  "(it would receive the access token)")
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def _token(self, *, force: bool) -> str | None:
        if self.token_provider is None:
            return None
        if force and self._force_kw:
            return self.token_provider(force_refresh=True)
        return self.token_provider()

    def _headers(self, extra: dict[str, str] | None, token: str | None,
                 has_body: bool) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if has_body:
            headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        delay = random.uniform(delay / 2, delay) if delay > 0 else 0.0
        if retry_after is not None:
            delay = max(delay, retry_after)
        if delay > 0:
            time.sleep(delay)

    def request(self, method: str, path: str, *, params: Params | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                retry_safe: bool | None = None) -> requests.Response:
        """Send one FHIR request with auth, retries and timeouts; return the final response.

        ``retry_safe`` defaults to True for GET, HEAD, PUT and DELETE and False
        for POST. Error statuses are returned, not raised (see :meth:`_check`).
        """
        method = method.upper()
        safe = method in ("GET", "HEAD", "PUT", "DELETE") if retry_safe is None else retry_safe
        url = self._url(path)
        log_path = urlsplit(url).path
        data = orjson.dumps(body) if body is not None else None
        attempt = 0
        force = False
        refreshed = False
        while True:
            token = self._token(force=force)
            force = False
            try:
                response = self.session.request(
                    method, url, params=as_params(params) or None, data=data,
                    headers=self._headers(headers, token, data is not None),
                    timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                if attempt < self.retries and (safe or _never_sent(exc)):
                    log.warning("%s %s failed (%s); retry %d of %d", method, log_path,
                                type(exc).__name__, attempt + 1, self.retries)
                    self._wait(attempt, None)
                    attempt += 1
                    continue
                raise RemoteError(f"{method} {log_path}: {type(exc).__name__} after "
                                  f"{attempt + 1} attempt(s)", status=502) from exc
            status = response.status_code
            log.debug("%s %s -> %d (attempt %d)", method, log_path, status, attempt + 1)
            if status == 401 and self.token_provider is not None and not refreshed:
                refreshed = force = True
                response.close()
                log.info("%s %s -> 401; refreshing the access token and repeating once",
                         method, log_path)
                continue
            if safe and status in _RETRY_STATUS and attempt < self.retries:
                wait = _retry_after(response)
                if wait is not None and wait > self.max_retry_after:
                    return response
                log.warning("%s %s -> %d; retry %d of %d", method, log_path, status,
                            attempt + 1, self.retries)
                response.close()
                self._wait(attempt, wait)
                attempt += 1
                continue
            return response

    def _check(self, response: requests.Response, *, search: bool = False) -> Any:
        """Raise the mapped error for an error status; return the JSON body otherwise."""
        if response.status_code >= 400:
            raise error_from_response(response, search=search)
        if response.status_code >= 300:
            raise RemoteError(f"unexpected HTTP {response.status_code}", response=response,
                              status=502)
        body = _json_body(response)
        if response.content and body is None:
            raise RemoteError("The server answered with something that is not JSON",
                              response=response, status=502)
        return body

    def _stored(self, response: requests.Response, body: Any, *, method: str = "PUT") -> Stored:
        """Build a Stored from a resource body, fetching Location when the body is not one."""
        if not isinstance(body, dict) or body.get("resourceType") in (None, "OperationOutcome"):
            location = response.headers.get("Content-Location") or response.headers.get("Location")
            if not location:
                raise RemoteError("The server returned neither the resource nor its Location",
                                  response=response, status=502)
            rtype, rid, version = _type_id_from_url(location)
            if rtype is None or rid is None:
                raise RemoteError("The server returned an unusable Location", response=response,
                                  status=502)
            fetched = self.vread(rtype, rid, version) if version else self.read(rtype, rid)
            fetched.method = method
            return fetched
        stored = Stored.from_resource(body, method=method)
        if not stored.version_id and response.headers.get("ETag"):
            stored.version_id = _strip_etag(response.headers["ETag"])
        return stored

    # ---------------------------------------------------------------- reads

    def read(self, resource_type: str, id: str) -> Stored:
        """Return the current version; NotFound or Gone."""
        response = self.request("GET", f"{resource_type}/{id}")
        return self._stored(response, self._check(response))

    def vread(self, resource_type: str, id: str, version_id: str) -> Stored:
        """Return one version; NotFound or Gone."""
        response = self.request("GET", f"{resource_type}/{id}/_history/{version_id}")
        return self._stored(response, self._check(response))

    def capabilities(self) -> dict[str, Any]:
        """Return the server's CapabilityStatement."""
        response = self.request("GET", "metadata")
        return self._check(response)

    # --------------------------------------------------------------- writes

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """POST a new resource; with ``if_none_exist`` the server returns the match (200) instead.

        A conditional create is retried on transient failures; a plain create is
        not (it may already be stored), see the module docstring.
        """
        rtype = resource.get("resourceType")
        if not rtype:
            raise InvalidResource("The resource has no resourceType")
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist.lstrip("?")
        body = {k: v for k, v in resource.items() if k != "id"}
        response = self.request("POST", rtype, body=body, headers=headers,
                                retry_safe=bool(if_none_exist))
        data = self._check(response)
        created = response.status_code == 201
        return WriteResult(self._stored(response, data, method="POST" if created else "PUT"),
                           created=created)

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        """PUT a new version (or create with the given id); VersionConflict on a stale If-Match."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not rtype or not rid:
            raise InvalidInput("An update needs the resourceType and id")
        headers = {"Prefer": "return=representation"}
        if if_match:
            headers["If-Match"] = _if_match(if_match)
        response = self.request("PUT", f"{rtype}/{rid}", body=resource, headers=headers)
        data = self._check(response)
        return WriteResult(self._stored(response, data), created=response.status_code == 201)

    def delete(self, resource_type: str, id: str) -> None:
        """DELETE; a missing or already deleted resource is a no-op (404/410 are accepted)."""
        response = self.request("DELETE", f"{resource_type}/{id}")
        if response.status_code in (404, 410):
            issues = issues_from_outcome(_json_body(response))
            if not any(i.code == "not-supported" for i in issues):
                return
        self._check(response)

    # --------------------------------------------------------------- search

    def search(self, resource_type: str, params: Params = (), *, strict: bool = False) -> SearchResult:
        """GET a type search (``_count``, ``_offset``... pass through); the next link is ``next_url``."""
        pairs = as_params(params)
        headers = {"Prefer": "handling=strict"} if strict else None
        response = self.request("GET", resource_type, params=pairs, headers=headers)
        return self._search_result(resource_type, pairs, self._check(response, search=True))

    def next_page(self, result: SearchResult) -> SearchResult | None:
        """Follow a search result's next link; None on the last page."""
        if not result.next_url:
            return None
        response = self.request("GET", result.next_url)
        pairs = parse_qsl(urlsplit(result.next_url).query, keep_blank_values=True)
        return self._search_result(result.resource_type, pairs,
                                   self._check(response, search=True))

    def _search_result(self, resource_type: str | None, pairs: list[tuple[str, str]],
                       bundle: Any) -> SearchResult:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise RemoteError("The server did not answer the search with a Bundle", status=502)
        matches: list[Stored] = []
        included: list[Stored] = []
        warnings: list[str] = []
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource")
            mode = (entry.get("search") or {}).get("mode", "match")
            if not isinstance(resource, dict):
                continue
            if resource.get("resourceType") == "OperationOutcome" and mode == "outcome":
                warnings.extend(i.message for i in issues_from_outcome(resource))
            elif mode == "include":
                included.append(Stored.from_resource(resource))
            else:
                matches.append(Stored.from_resource(resource))
        next_url = next((link.get("url") for link in bundle.get("link") or []
                         if link.get("relation") == "next"), None)
        values = dict(pairs)
        try:
            count = int(values.get("_count", len(matches)))
            offset = int(values.get("_offset", 0))
        except ValueError:
            count, offset = len(matches), 0
        return SearchResult(resource_type, matches, included, total=bundle.get("total"),
                            offset=offset, count=count, has_more=next_url is not None,
                            params=pairs, warnings=warnings, next_url=next_url)

    # -------------------------------------------------------------- history

    def history(self, resource_type: str | None = None, id: str | None = None, *,
                since: str | None = None, count: int = 100,
                cursor: str | None = None) -> HistoryResult:
        """Return history entries (newest first); ``next_cursor`` is the server's next link."""
        if cursor:
            response = self.request("GET", cursor)
        else:
            path = "/".join(p for p in (resource_type, id if resource_type else None, "_history") if p)
            params = [("_count", str(count))] + ([("_since", since)] if since else [])
            response = self.request("GET", path, params=params)
        bundle = self._check(response, search=True)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise RemoteError("The server did not answer _history with a Bundle", status=502)
        entries = [s for s in (self._history_entry(e) for e in bundle.get("entry") or []) if s]
        next_url = next((link.get("url") for link in bundle.get("link") or []
                         if link.get("relation") == "next"), None)
        return HistoryResult(entries, next_cursor=next_url, total=bundle.get("total"),
                             next_url=next_url)

    def _history_entry(self, entry: dict[str, Any]) -> Stored | None:
        request = entry.get("request") or {}
        response = entry.get("response") or {}
        method = str(request.get("method") or "").upper()
        if not method:
            method = _STATUS_TO_METHOD.get(str(response.get("status", ""))[:3], "PUT")
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") and method != "DELETE":
            return Stored.from_resource(resource, method=method)
        rtype, rid, version = _type_id_from_url(entry.get("fullUrl") or "")
        if rtype is None:
            rtype, rid, version = _type_id_from_url("/" + str(request.get("url") or ""))
        if rtype is None or rid is None:
            return None
        etag = response.get("etag")
        return Stored(rtype, rid, _strip_etag(etag) if etag else (version or ""),
                      str(response.get("lastModified") or ""), deleted=True, method="DELETE")

    # ---------------------------------------------------------- transaction

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction or batch Bundle; return the response Bundle.

        Retried on transient failures only when every entry is safe to repeat
        (no plain POST create), see the module docstring.
        """
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise InvalidResource("Expected a Bundle")
        response = self.request("POST", "", body=bundle,
                                headers={"Prefer": "return=representation"},
                                retry_safe=_bundle_is_retry_safe(bundle))
        return self._check(response)

