"""A `ListWatch` over Kubernetes YAML/JSON files and folders (the `from_yaml` option).

Reads what `kubectl get ns,svc,endpointslices,pods -A -o yaml` prints (a `kind: List`), typed
lists (`kind: ServiceList`), multi-document manifests and folders of `*.yaml`/`*.yml`/`*.json`,
and serves the Services, EndpointSlices, Namespaces and Pods in them as a single list page whose
resourceVersion is a fingerprint of the files (paths, sizes, mtimes). A watch polls that
fingerprint and raises `Gone` when it changes, so the reflector relists: that is how edits are
picked up. A file that does not parse is logged (ERROR, with its name) and the list fails with
`Unavailable`, so the previous state stays in the store until the files are fixed.

It emulates no controller (no cluster IPs, no EndpointSlices are made up) and never writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from clusterdns.k8s.objects import JSON, KIND_OF_API, Kind
from clusterdns.k8s.source import Gone, ListPage, Unavailable, WatchEvent, WatchStream

log = logging.getLogger("clusterdns.plugins.kubernetes")

SUFFIXES: Final = (".yaml", ".yml", ".json")

Paths = list[Path]
_MAX_SETTLE_WAITS: Final = 20

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rv: str
    objects: dict[Kind, list[JSON]]
    error: str | None = None


class YamlSource:
    """Objects read from Kubernetes YAML files; thread-safe (reflector threads share it)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        poll_s: float = 1.0,
        settle_s: float = 0.1,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.poll_s = poll_s
        """How often a watch checks the files for changes, seconds."""
        self.settle_s = settle_s
        """Files modified less than this long ago are read only once they stop changing."""
        self.name = "YAML files " + ", ".join(str(p) for p in self.paths)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    # -- ListWatch -------------------------------------------------------------------------------
    def list(
        self,
        kind: Kind,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListPage:
        """All objects of `kind` in the files (one page; `limit` is ignored)."""
        snap = self._load()
        if snap.error is not None:
            raise Unavailable(snap.error)
        try:
            labels = LabelSelector.parse(label_selector or "")
            fields = FieldSelector.parse(field_selector or "")
        except ValueError as exc:
            raise Unavailable(str(exc), status=400) from exc
        items = [
            obj
            for obj in snap.objects.get(kind, [])
            if labels.matches(_labels(obj)) and fields.matches(obj)
        ]
        return ListPage(items=items, resource_version=snap.rv)

    def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> WatchStream:
        """A stream that yields nothing and raises `Gone` once the files differ from the list."""
        return _PollStream(self, resource_version, timeout_s)

    # -- files -----------------------------------------------------------------------------------
    def files(self) -> Paths:
        """The files read, in order: given files, then each folder's files (recursive, sorted)."""
        out: Paths = []
        for path in self.paths:
            if path.is_dir():
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    out.extend(
                        Path(root, n)
                        for n in sorted(names)
                        if n.endswith(SUFFIXES) and not n.startswith(".")
                    )
            else:
                out.append(path)
        return out

    def fingerprint(self) -> str:
        """The resourceVersion of the files as they are now (changes with any edit)."""
        return self._stat()[0]

    def _stat(self) -> tuple[str, float]:
        """(fingerprint, newest mtime in seconds) of the files."""
        h = hashlib.sha256()
        newest = 0.0
        for path in self.files():
            try:
                st = path.stat()
            except OSError as exc:
                h.update(f"{path}\0{exc.errno}\n".encode())
                continue
            h.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
            newest = max(newest, st.st_mtime)
        return h.hexdigest()[:20], newest

    def _settled(self) -> str:
        """The fingerprint once no file has changed for `settle_s` (an editor may be writing)."""
        for _ in range(_MAX_SETTLE_WAITS):
            rv, newest = self._stat()
            age = time.time() - newest
            if age >= self.settle_s or age < 0:
                return rv
            time.sleep(self.settle_s - age)
        return self._stat()[0]

    def _load(self) -> _Snapshot:
        with self._lock:
            for _ in range(_MAX_SETTLE_WAITS):
                rv = self._settled()
                if self._snapshot is not None and self._snapshot.rv == rv:
                    return self._snapshot
                objects, error = self._parse()
                if self.fingerprint() == rv:
                    break  # nothing changed while reading: a consistent snapshot
            if error is not None:
                log.error("%s; keeping the previous state", error)
                snap = _Snapshot(rv, {}, error)
            else:
                snap = _Snapshot(rv, {k: list(v.values()) for k, v in objects.items()})
                log.info(
                    "loaded %s",
                    ", ".join(f"{len(snap.objects[k])} {k.value}" for k in Kind),
                )
            self._snapshot = snap
            return snap

    def _parse(self) -> tuple[dict[Kind, dict[tuple[str, str], JSON]], str | None]:
        """Every watched object in the files, keyed by (namespace, name); or the first error."""
        objects: dict[Kind, dict[tuple[str, str], JSON]] = {k: {} for k in Kind}
        paths: Paths = self.files()
        if not paths:
            return objects, "no YAML or JSON files in " + ", ".join(str(p) for p in self.paths)
        for path in paths:
            try:
                docs = _read(path)
            except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
                return objects, f"{path}: {_one_line(exc)}"
            for doc in docs:
                for kind, obj in _flatten(doc, None):
                    meta = obj["metadata"]
                    objects[kind][(str(meta.get("namespace") or ""), str(meta["name"]))] = obj
        return objects, None


class _PollStream:
    """A watch over files: polls the fingerprint every `poll_s` until it changes."""

    def __init__(self, source: YamlSource, rv: str, timeout_s: float) -> None:
        self._source = source
        self._rv = rv
        self._timeout_s = timeout_s
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        """Yield nothing; raise Gone when the files change, return at timeout or close."""
        deadline = time.monotonic() + self._timeout_s
        while not self._closed.is_set():
            if self._source.fingerprint() != self._rv:
                raise Gone("the YAML files changed")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.wait(min(self._source.poll_s, remaining)):
                return
        return
        yield  # a generator that yields no event

    def close(self) -> None:
        """End the watch now."""
        self._closed.set()


# -- documents -------------------------------------------------------------------------------------
def _read(path: Path) -> list[object]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        doc: object = json.loads(text)
        return [doc]
    return list(yaml.load_all(text, Loader=_Loader))


def _flatten(doc: object, default_kind: str | None) -> Iterator[tuple[Kind, JSON]]:
    """The watched objects in a document: itself, or the items of a `List`/`<Kind>List`."""
    if not isinstance(doc, dict):
        return
    api_kind = doc.get("kind") or default_kind
    items = doc.get("items")
    if isinstance(api_kind, str) and api_kind.endswith("List") and isinstance(items, list):
        item_kind = api_kind[: -len("List")] or None
        for item in items:
            yield from _flatten(item, item_kind)
        return
    kind = KIND_OF_API.get(api_kind) if isinstance(api_kind, str) else None
    if kind is None:
        return
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        return
    if kind is not Kind.NAMESPACE and not meta.get("namespace"):
        doc = {**doc, "metadata": {**meta, "namespace": "default"}}  # as `kubectl apply` does
    yield kind, doc


def _labels(obj: JSON) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- selectors -------------------------------------------------------------------------------------
_SPLIT = re.compile(r",(?![^()]*\))")
_SET_REQ = re.compile(r"^(?P<key>[\w./-]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_REQ = re.compile(r"^(?P<key>[\w./-]+)\s*(?P<op>!=|==|=)\s*(?P<value>[\w./-]*)$")
_KEY = re.compile(r"^(?P<neg>!?)\s*(?P<key>[\w./-]+)$")


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`."""

    requirements: tuple[tuple[str, str, frozenset[str]], ...]
    """(key, operator, values) with operator one of =, !=, in, notin, exists, !exists."""

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse `text`; raise ValueError naming the bad requirement."""
        reqs: list[tuple[str, str, frozenset[str]]] = []
        for part in _SPLIT.split(text):
            part = part.strip()
            if not part:
                continue
            if m := _SET_REQ.match(part):
                values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
                reqs.append((m["key"], m["op"], values))
            elif m := _EQ_REQ.match(part):
                op = "!=" if m["op"] == "!=" else "="
                reqs.append((m["key"], op, frozenset([m["value"]])))
            elif m := _KEY.match(part):
                reqs.append((m["key"], "!exists" if m["neg"] else "exists", frozenset()))
            else:
                raise ValueError(f"invalid label selector requirement {part!r}")
        return cls(tuple(reqs))

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfy every requirement."""
        for key, op, values in self.requirements:
            value = labels.get(key)
            if op == "exists":
                ok = value is not None
            elif op == "!exists":
                ok = value is None
            elif op in ("=", "in"):
                ok = value is not None and value in values
            else:  # != and notin also match a missing label
                ok = value is None or value not in values
            if not ok:
                return False
        return True


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed field selector: comma-separated `path=value`, `path==value`, `path!=value`."""

    requirements: tuple[tuple[tuple[str, ...], bool, str], ...]
    """(dotted path, equal?, value)."""

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse `text`; raise ValueError naming the bad requirement."""
        reqs: list[tuple[tuple[str, ...], bool, str]] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.match(r"^([\w.-]+)\s*(!=|==|=)\s*(.*)$", part)
            if m is None:
                raise ValueError(f"invalid field selector requirement {part!r}")
            reqs.append((tuple(m[1].split(".")), m[2] != "!=", m[3].strip()))
        return cls(tuple(reqs))

    def matches(self, obj: JSON) -> bool:
        """Whether `obj` satisfies every requirement (a missing field reads as empty)."""
        for path, equal, value in self.requirements:
            node: object = obj
            for step in path:
                node = node.get(step) if isinstance(node, dict) else None
            actual = "" if node is None else str(node)
            if (actual == value) != equal:
                return False
        return True
