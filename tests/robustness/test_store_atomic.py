"""Registering one prompt id from many clients at once (a security review: 8 clients, 80
requests, got 500s, 404s, 201s carrying another client's content id, and an entry mixing one
client's manifest with another's tensors and features). A registration lands whole or not at
all; `put` answers with what it wrote; leftovers are cleaned up; stores written before version
directories still read. No Ray, no server: the store on real files, and on fsspec's memory://.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import fsspec
import numpy as np
import pytest
from safetensors.numpy import save

import promptserve.serving.metrics
from promptserve.models.artifacts import PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.serving import store as store_module
from promptserve.serving.errors import PromptNotFound
from promptserve.serving.store import PromptStore

WRITERS, ROUNDS = 8, 10
PID = "pets"


def _value(writer: int, round_: int) -> float:
    return float(writer * 100 + round_)


def _artifact(writer: int, round_: int = 0) -> PromptArtifact:
    """A CLIP artifact made of numpy alone; its class names and tensor say who wrote it."""
    manifest = ClipArtifactManifest(
        method="coop",
        backbone="b",
        classnames=[f"w{writer}-r{round_}-c{k}" for k in range(3)],
    )
    return PromptArtifact(manifest, {"ctx": np.full((4, 8), _value(writer, round_), np.float32)})


def _features(writer: int, round_: int = 0) -> np.ndarray:
    return np.full((3, 8), _value(writer, round_), np.float32)


def _writer_of(artifact: PromptArtifact) -> tuple[int, int]:
    writer, round_, _ = artifact.manifest.labels()[0].split("-")
    return int(writer[1:]), int(round_[1:])


def _check_whole(artifact: PromptArtifact, features: np.ndarray) -> tuple[int, int]:
    """The artifact and features come from one registration: the writer its class names
    name wrote both the tensor and the features."""
    writer, round_ = _writer_of(artifact)
    expected = _artifact(writer, round_)
    assert artifact.manifest.labels() == expected.manifest.labels()
    assert artifact.content_id == expected.content_id
    np.testing.assert_array_equal(artifact.tensors["ctx"], expected.tensors["ctx"])
    np.testing.assert_array_equal(features, _features(writer, round_))
    return writer, round_


@pytest.fixture(params=["local", "memory"])
def store_url(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "store")
        return
    url = f"memory://promptserve-test-{uuid.uuid4().hex}"  # memory:// is one per process
    yield url
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _entries(store: PromptStore, prompt_id: str = PID) -> list[str]:
    return sorted(
        p.rstrip("/").rsplit("/", 1)[-1]
        for p in store.fs.ls(f"{store.root}/{prompt_id}", detail=False)
    )


def _versions(store: PromptStore, prompt_id: str = PID) -> list[str]:
    return [n for n in _entries(store, prompt_id) if n.startswith("v-")]


def _plant(store: PromptStore, version: str, prompt_id: str = PID) -> None:
    """A version directory no pointer names: a crashed writer's, or one still being written."""
    store.fs.makedirs(f"{store.root}/{prompt_id}/{version}", exist_ok=True)
    store.fs.pipe(f"{store.root}/{prompt_id}/{version}/manifest.json", b"{}")


def _pointer(store: PromptStore, prompt_id: str = PID) -> dict:
    return json.loads(store.fs.cat(f"{store.root}/{prompt_id}/registration.json"))


@pytest.fixture
def quarantined(monkeypatch):
    """Counts what the store reports to `promptserve_store_quarantined_total`, without Ray."""
    counts = {"n": 0}

    class Counter:
        def inc(self, value: float = 1.0) -> None:
            counts["n"] += int(value)

    class Metrics:
        store_quarantined = Counter()

    monkeypatch.setattr(promptserve.serving.metrics, "metrics", lambda: Metrics)
    return counts


def test_concurrent_registrations_of_one_prompt_land_whole(store_url):
    """8 writers x 10 rounds register different artifacts under one id at once, while a reader
    resolves and loads it in a loop. Every put answers with its own content id; after each
    round the entry is one writer's, whole; the reader sees only whole registrations or a
    "replaced; retry"."""
    store = PromptStore(store_url)
    store.put(PID, _artifact(0, 99), _features(0, 99))  # something to read from the start
    stop = threading.Event()

    def reader() -> dict[str, int]:
        """Resolve and load until told to stop; an error other than "replaced" ends it."""
        seen = {"whole": 0, "replaced": 0}
        while not stop.is_set():
            try:
                info = store.info(PID)
                artifact, features = store.load(PID, info.content_id)
            except PromptNotFound as exc:
                if "replaced" not in exc.message:
                    raise
                seen["replaced"] += 1
                continue
            assert artifact.content_id == info.content_id
            assert info.classnames == artifact.manifest.labels()
            _check_whole(artifact, features)
            seen["whole"] += 1
        return seen

    with ThreadPoolExecutor(1) as watcher, ThreadPoolExecutor(WRITERS) as pool:
        reading = watcher.submit(reader)
        try:
            for round_ in range(ROUNDS):
                artifacts = [_artifact(w, round_) for w in range(WRITERS)]
                start = threading.Barrier(WRITERS)

                def put(writer: int, round_=round_, artifacts=artifacts, start=start):
                    start.wait(timeout=30)
                    return store.put(PID, artifacts[writer], _features(writer, round_))

                infos = list(pool.map(put, range(WRITERS)))  # a put that raised raises here
                for writer, info in enumerate(infos):
                    assert info.content_id == artifacts[writer].content_id, (round_, writer)
                    assert info.classnames == artifacts[writer].manifest.labels()
                current = store.info(PID)
                ids = [a.content_id for a in artifacts]
                assert current.content_id in ids, round_
                artifact, features = store.load(PID, current.content_id)
                assert _check_whole(artifact, features) == (ids.index(current.content_id), round_)
                assert current.classnames == artifact.manifest.labels()
                if reading.done():  # the reader failed: its error, now
                    reading.result()
        finally:
            stop.set()
        seen = reading.result(timeout=30)  # the reader's failure, if it failed, raises here
    assert seen["whole"] > 0, seen


def test_put_answers_with_what_it_wrote_even_when_replaced_at_once(store_url, monkeypatch):
    """A registration replaced right after its commit still answers with its own content id
    (the old code re-read the store after writing and answered with the other client's)."""
    store = PromptStore(store_url)
    a, b = _artifact(1), _artifact(2)
    commit = store._commit
    done = []

    def commit_then_replaced(prompt_id: str, record: bytes) -> None:
        commit(prompt_id, record)
        if not done:
            done.append(True)
            store.put(PID, b, _features(2))

    monkeypatch.setattr(store, "_commit", commit_then_replaced)
    info = store.put(PID, a, _features(1))
    assert info.content_id == a.content_id and info.classnames == a.manifest.labels()
    assert store.info(PID).content_id == b.content_id
    with pytest.raises(PromptNotFound, match="replaced"):
        store.load(PID, a.content_id)
    assert _versions(store) == [_pointer(store)["version"]]


def test_the_flat_layout_of_older_stores_still_reads_and_is_replaced(store_url):
    """A store written before version directories: files directly in `<root>/<prompt_id>/`,
    a registration without "version". It reads; a put over it writes a version directory and
    removes the flat files."""
    store = PromptStore(store_url)
    old = _artifact(1)
    flat = f"{store.root}/{PID}"
    store.fs.makedirs(flat, exist_ok=True)
    store.fs.pipe(f"{flat}/manifest.json", old.manifest.model_dump_json(indent=2).encode())
    store.fs.pipe(f"{flat}/prompt.safetensors", old.tensor_bytes())
    store.fs.pipe(
        f"{flat}/features.safetensors",
        save({"features": _features(1)}, metadata={"content_id": old.content_id}),
    )
    store.fs.pipe(
        f"{flat}/registration.json",
        json.dumps(
            {"content_id": old.content_id, "registered_at": "2024-05-01T12:00:00+00:00"}
        ).encode(),
    )
    info = store.info(PID)
    assert info.content_id == old.content_id and info.classnames == old.manifest.labels()
    assert [p.prompt_id for p in store.list()] == [PID]
    _check_whole(*store.load(PID, old.content_id))

    new = _artifact(2)
    assert store.put(PID, new, _features(2)).content_id == new.content_id
    assert store.info(PID).content_id == new.content_id
    _check_whole(*store.load(PID, new.content_id))
    with pytest.raises(PromptNotFound, match="replaced"):
        store.load(PID, old.content_id)
    version = _pointer(store)["version"]
    assert _entries(store) == ["registration.json", version]  # the flat files are gone
    store.delete(PID)
    assert store.list() == [] and not store.fs.exists(flat)


def test_replaced_versions_and_leftovers_are_removed_never_the_current_one(store_url):
    store = PromptStore(store_url)
    for round_ in range(5):
        store.put(PID, _artifact(round_), _features(round_))
        assert _versions(store) == [_pointer(store)["version"]]
    # leftovers of a crashed writer (an hour old) and a registration in flight (just begun)
    hour_ago = time.time_ns() - 3600 * 10**9
    crashed = f"v-{hour_ago}-{uuid.uuid4().hex}"
    in_flight = f"v-{time.time_ns()}-{uuid.uuid4().hex}"
    for version in (crashed, in_flight):
        _plant(store, version)
    store.fs.pipe(f"{store.root}/{PID}/.registration-{hour_ago}-{uuid.uuid4().hex}.tmp", b"{}")
    store.put(PID, _artifact(7), _features(7))
    current = _pointer(store)["version"]
    assert _entries(store) == sorted(["registration.json", current, in_flight])
    _check_whole(*store.load(PID, _artifact(7).content_id))


def test_a_sweep_never_removes_the_current_version(store_url, monkeypatch):
    """With every version counting as stale at once, the one the pointer names stays."""
    monkeypatch.setattr(store_module, "STALE_AFTER_S", 0.0)
    store = PromptStore(store_url)
    for round_ in range(3):
        store.put(PID, _artifact(round_), _features(round_))
        assert _versions(store) == [_pointer(store)["version"]]
        _check_whole(*store.load(PID, _artifact(round_).content_id))


def test_delete_removes_the_prompt_and_leaves_a_registration_in_flight(store_url):
    store = PromptStore(store_url)
    store.put(PID, _artifact(1), _features(1))
    store.delete(PID)
    assert store.list() == [] and not store.fs.exists(f"{store.root}/{PID}")
    with pytest.raises(PromptNotFound, match="no prompt"):
        store.info(PID)
    with pytest.raises(PromptNotFound, match="no prompt"):
        store.delete(PID)

    store.put(PID, _artifact(2), _features(2))
    in_flight = f"v-{time.time_ns()}-{uuid.uuid4().hex}"  # another client's put, not committed
    _plant(store, in_flight)
    store.delete(PID)
    assert _entries(store) == [in_flight]
    assert store.list() == []
    store.put(PID, _artifact(3), _features(3))  # and the prompt can be registered again
    assert store.info(PID).content_id == _artifact(3).content_id


def test_a_failed_put_leaves_the_registration_as_it_was(store_url, monkeypatch):
    store = PromptStore(store_url)
    store.put(PID, _artifact(1), _features(1))
    pipe = store.fs.pipe

    def failing_pipe(path, *args, **kwargs):
        if path.endswith("features.safetensors"):
            raise OSError("the store went away")
        return pipe(path, *args, **kwargs)

    monkeypatch.setattr(store.fs, "pipe", failing_pipe)
    with pytest.raises(OSError, match="went away"):
        store.put(PID, _artifact(2), _features(2))
    monkeypatch.undo()
    assert store.info(PID).content_id == _artifact(1).content_id
    _check_whole(*store.load(PID, _artifact(1).content_id))
    assert _versions(store) == [_pointer(store)["version"]]


def test_corrupt_versions_are_quarantined_and_counted(store_url, quarantined):
    """The corruption quarantine on the versioned layout: a 404 saying "corrupt", left out of
    the list, deletable, counted; altered files are refused by `load`, also counted."""
    store = PromptStore(store_url)
    for name in ("good", "bad", "worse", "altered", "escape"):
        store.put(name, _artifact(1), _features(1))

    def version_file(name: str, file: str) -> str:
        return f"{store.root}/{name}/{_pointer(store, name)['version']}/{file}"

    store.fs.pipe(version_file("bad", "manifest.json"), b"{not json")
    store.fs.pipe(f"{store.root}/worse/registration.json", b"[]")
    store.fs.pipe(  # features of another registration, under this one's content id
        version_file("altered", "features.safetensors"),
        save({"features": _features(5)}, metadata={"content_id": _artifact(5).content_id}),
    )
    pointer = _pointer(store, "escape")
    store.fs.pipe(
        f"{store.root}/escape/registration.json",
        json.dumps({**pointer, "version": "../good/" + pointer["version"]}).encode(),
    )
    assert [p.prompt_id for p in store.list()] == ["altered", "good"]
    for name in ("bad", "worse", "escape"):
        with pytest.raises(PromptNotFound, match="corrupt"):
            store.info(name)
    with pytest.raises(PromptNotFound, match="no longer holds"):
        store.load("altered", _artifact(1).content_id)
    assert quarantined["n"] >= 4
    for name in ("bad", "worse", "escape"):
        store.delete(name)
        assert not store.fs.exists(f"{store.root}/{name}")
    assert [p.prompt_id for p in store.list()] == ["altered", "good"]
    _check_whole(*store.load("good", _artifact(1).content_id))
