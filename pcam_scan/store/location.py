"""Where a store lives: a local directory or an fsspec URL, opened the same way in any process.

A `StoreLocation` is a small picklable value (a URI and the fsspec storage options), so Ray
workers and subprocesses open the store themselves instead of receiving open handles. Local paths
(and `file://` URLs) use Zarr's LocalStore, which writes every object through a temporary file and
a rename, so a metadata document is never seen half written. Other URLs (s3://, gs://, memory://,
...) go through Zarr's FsspecStore; object stores replace whole objects on each write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.store.guarded_store import GuardedLocalStore, IsolatedLocalStore, ReadIsolation
from pcam_scan.store.identity import json_copy

AccessMode = Literal["r", "r+", "a", "w", "w-"]
NodeT = TypeVar("NodeT", zarr.Array[Any], zarr.Group)
FILE_SCHEME = "file://"


@dataclass(frozen=True)
class StoreLocation:
    """A store URI plus fsspec storage options (only for URLs, e.g. credentials or endpoint)."""

    uri: str
    storage_options: Mapping[str, object] = field(default_factory=dict)
    isolation: ReadIsolation | None = field(default=None, compare=False, repr=False)
    """Read-only local stores only: every file read runs through it, by slide
    (`pcam_scan.store.guarded_store.IsolatedLocalStore`, the viewer's); never sent to Ray."""

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise ConfigError("the store location must be a non-empty path or URL")
        if self.isolation is not None and self.is_url:
            raise ConfigError(f"per-slide read isolation applies to local stores only, not to {self.uri!r}")
        if self.storage_options and not self.is_url:
            raise ConfigError(f"storage options apply to URLs only, not to the local path {self.uri!r}")
        object.__setattr__(self, "storage_options", dict(self.storage_options))

    @property
    def is_url(self) -> bool:
        return "://" in self.uri and not self.uri.startswith(FILE_SCHEME)

    @property
    def local_path(self) -> Path | None:
        if self.is_url:
            return None
        return Path(self.uri.removeprefix(FILE_SCHEME))

    def zarr_store(self, read_only: bool) -> Store:
        local = self.local_path
        if local is None:
            return FsspecStore.from_url(self.uri, storage_options=dict(self.storage_options), read_only=read_only)
        if self.isolation is not None:
            if not read_only:
                raise StoreError(f"{self.uri} is opened for isolated reads only")
            return IsolatedLocalStore(local, self.isolation)
        return GuardedLocalStore(local, read_only=read_only)

    def group(
        self, path: str = "", *, mode: AccessMode = "r", attributes: dict[str, object] | None = None
    ) -> zarr.Group:
        """Open (or with mode a/w/w- create, with `attributes`) the group at `path` in the store."""
        return zarr.open_group(
            self.zarr_store(mode == "r"),
            path=path,
            mode=mode,
            zarr_format=3,
            attributes=None if attributes is None else cast(dict[str, Any], json_copy(attributes)),
        )

    def array(self, path: str, *, mode: AccessMode = "r") -> zarr.Array[Any]:
        """Open the existing array at `path` (one metadata read, no group opened on the way)."""
        return zarr.open_array(self.zarr_store(mode == "r"), path=path, mode=mode, zarr_format=3)

    def child_node_names(self) -> list[str]:
        """Names of the nodes (folders with a `zarr.json`) right under the store's root, read from
        the listing alone: a child whose metadata is damaged is still listed, so it can be
        reported instead of making the whole listing fail."""
        store = self.zarr_store(read_only=True)

        async def collect() -> list[str]:
            names = [name async for name in store.list_dir("")]
            return [name for name in names if await store.exists(f"{name}/zarr.json")]

        return sorted(sync(collect()))


def child_array(group: zarr.Group, name: str) -> zarr.Array[Any]:
    """The array `name` under `group`; a StoreError when it is missing or not an array."""
    array: zarr.Array[Any] = _child(group, name, zarr.Array)  # isinstance needs the bare class
    return array


def child_group(group: zarr.Group, name: str) -> zarr.Group:
    """The group `name` under `group`; a StoreError when it is missing or not a group."""
    return _child(group, name, zarr.Group)


def _child(group: zarr.Group, name: str, kind: type[NodeT]) -> NodeT:
    try:
        node = group[name]
    except KeyError as err:
        raise StoreError(f"{group.path}/{name} is missing from the store") from err
    if not isinstance(node, kind):
        raise StoreError(f"{group.path}/{name} in the store is not a {kind.__name__}")
    return node


def write_attr(node: zarr.Group | zarr.Array[Any], key: str, value: object) -> None:
    """Set one attribute to a JSON value (checked: no NaN, no objects) in one metadata write."""
    node.attrs[key] = cast(Any, json_copy(value))
