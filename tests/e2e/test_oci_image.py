"""envoy/istio/oci_image.py (`make image`): the OCI image Istio's WasmPlugin pulls, read back here with
nothing but json, tarfile, gzip and hashlib, the way a registry client and Istio's agent would:
index.json -> manifest -> config and the one layer -> plugin.wasm, every blob checked against its
digest, and plugin.wasm checked byte for byte against the built devgate.wasm.

What Istio's agent accepts (the Wasm image spec's *compat* variant, istio pkg/wasm/imagefetcher.go): an
OCI manifest whose last layer is application/vnd.oci.image.layer.v1.tar+gzip and holds a tar entry
named plugin.wasm. For an oci:// URL the WasmPlugin `sha256` is compared with the image *manifest*
digest; only for http(s) URLs is it the module's own sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import harness
from conftest import call_or_fail

SCRIPT = harness.REPO / "envoy" / "istio" / "oci_image.py"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crate_version() -> str:
    """Cargo.toml's package version, read independently of the script (first `version = ` line)."""
    text = (harness.REPO / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"$', text, re.M).group(1)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=str(harness.REPO))


def make_image(out: Path, wasm: Path, *extra: str) -> dict:
    r = run_script("--wasm", str(wasm), "--out", str(out), "--json", *extra)
    assert (r.returncode, r.stderr) == (0, ""), (r.returncode, r.stderr)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def wasm_file() -> Path:
    return call_or_fail(harness.wasm_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory, wasm_file):
    out = tmp_path_factory.mktemp("oci")
    return out, make_image(out, wasm_file)


class Layout:
    """An OCI image layout directory, read from a {path: bytes} map (the directory or the tarball)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    @classmethod
    def from_dir(cls, root: Path) -> "Layout":
        return cls({p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})

    def json(self, path: str):
        return json.loads(self.files[path])

    def blob(self, desc: dict) -> bytes:
        algo, _, hexdigest = desc["digest"].partition(":")
        assert algo == "sha256" and len(hexdigest) == 64, desc
        data = self.files[f"blobs/sha256/{hexdigest}"]
        assert len(data) == desc["size"], f"size of {desc['digest']}: {len(data)}, descriptor says {desc['size']}"
        assert sha256(data) == hexdigest, f"blob {hexdigest} does not hash to its name"
        return data


def read_image(layout: Layout) -> dict:
    """Follow index -> manifest -> config, layer; check every step; return the pieces."""
    assert layout.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    index = layout.json("index.json")
    assert index["schemaVersion"] == 2 and index.get("mediaType") == INDEX_MT, index
    assert len(index["manifests"]) == 1, index
    mdesc = index["manifests"][0]
    assert mdesc["mediaType"] == MANIFEST_MT, mdesc
    manifest_bytes = layout.blob(mdesc)
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST_MT, manifest
    assert manifest["config"]["mediaType"] == CONFIG_MT, manifest
    config = json.loads(layout.blob(manifest["config"]))
    assert len(manifest["layers"]) == 1, manifest
    ldesc = manifest["layers"][0]
    assert ldesc["mediaType"] == LAYER_MT, ldesc
    assert ldesc.get("annotations") == {"org.opencontainers.image.title": "plugin.wasm"}, ldesc
    layer = layout.blob(ldesc)
    referenced = {d["digest"].split(":", 1)[1] for d in (mdesc, manifest["config"], ldesc)}
    blobs = {p.rsplit("/", 1)[1] for p in layout.files if p.startswith("blobs/")}
    assert blobs == referenced, f"unreferenced or missing blobs: {blobs ^ referenced}"
    return {"index": index, "manifest_desc": mdesc, "manifest": manifest, "manifest_bytes": manifest_bytes,
            "config": config, "layer": layer}


def plugin_from_layer(layer: bytes) -> tuple[bytes, tarfile.TarInfo, bytes]:
    """(plugin.wasm, its tar header, the uncompressed tar): the layer must be exactly one regular file."""
    assert layer[:2] == b"\x1f\x8b", "the layer is not gzip"
    assert layer[4:8] == b"\0\0\0\0", "gzip header mtime is not 0"
    assert not layer[3] & 0x08, "gzip header carries a file name"
    tar_bytes = gzip.decompress(layer)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"], [m.name for m in members]
        info = members[0]
        data = tar.extractfile(info).read()
    return data, info, tar_bytes


def test_plugin_wasm_is_the_built_module(built, wasm_file):
    out, summary = built
    image = read_image(Layout.from_dir(out / "devgate"))
    wasm = wasm_file.read_bytes()
    plugin, info, tar_bytes = plugin_from_layer(image["layer"])
    assert plugin == wasm, "plugin.wasm differs from devgate.wasm"
    assert info.isreg() and info.mode == 0o644 and info.mtime == 0, (info.mode, info.mtime)
    assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", ""), (info.uid, info.gid, info.uname)
    assert not info.pax_headers
    # the config names the uncompressed layer
    assert image["config"]["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + sha256(tar_bytes)]}
    assert (image["config"]["architecture"], image["config"]["os"]) == ("wasm", "wasip1")
    assert "created" not in image["config"], "a timestamp would make the digest change on every build"
    # the tag
    tag = crate_version()
    assert image["manifest_desc"]["annotations"] == {"org.opencontainers.image.ref.name": tag}
    assert image["manifest"]["annotations"]["org.opencontainers.image.version"] == tag
    # what the script reports
    assert summary["tag"] == tag
    assert summary["manifest_digest"] == image["manifest_desc"]["digest"] == "sha256:" + sha256(image["manifest_bytes"])
    assert summary["plugin_wasm_sha256"] == sha256(wasm) and summary["plugin_wasm_size"] == len(wasm)
    assert summary["layer_digest"] == image["manifest"]["layers"][0]["digest"]
    assert summary["config_digest"] == image["manifest"]["config"]["digest"]


def test_what_istio_reads(built, wasm_file):
    """Istio's compat-variant reader, step by step: the manifest is not Docker's schema 2, the LAST layer
    has the OCI tar+gzip media type, the tar entry whose base name is plugin.wasm is the module, and
    the module starts with the Wasm magic. The checksum Istio compares for oci:// is the manifest's."""
    out, summary = built
    image = read_image(Layout.from_dir(out / "devgate"))
    assert image["manifest"]["mediaType"] != "application/vnd.docker.distribution.manifest.v2+json"
    last = image["manifest"]["layers"][-1]
    assert last["mediaType"] == LAYER_MT
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image["layer"])), mode="r:") as tar:
        found = [m for m in tar.getmembers() if Path(m.name).name == "plugin.wasm"]
        module = tar.extractfile(found[0]).read()
    assert module[:4] == b"\0asm" and module == wasm_file.read_bytes()
    istio_checksum = sha256(image["manifest_bytes"])  # go-containerregistry's img.Digest().Hex
    assert summary["manifest_digest"] == "sha256:" + istio_checksum
    assert istio_checksum != summary["plugin_wasm_sha256"]


def test_archive_is_the_layout(built):
    """devgate.tar: the same files as the layout directory at the tarball's root (oci-archive form),
    directories included, with fixed metadata."""
    out, summary = built
    tar_path = out / "devgate.tar"
    assert summary["archive_sha256"] == sha256(tar_path.read_bytes())
    files, dirs = {}, []
    with tarfile.open(tar_path, mode="r:") as tar:
        for m in tar.getmembers():
            assert not m.name.startswith(("/", "./")) and ".." not in m.name.split("/"), m.name
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
            if m.isdir():
                assert m.mode == 0o755, m.name
                dirs.append(m.name)
            else:
                assert m.isreg() and m.mode == 0o644, m.name
                files[m.name] = tar.extractfile(m).read()
    assert sorted(dirs) == ["blobs", "blobs/sha256"]
    layout = Layout.from_dir(out / "devgate")
    assert files == layout.files
    from_archive = read_image(Layout(files))
    assert from_archive["manifest_desc"]["digest"] == summary["manifest_digest"]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path, built, wasm_file):
    """Two more builds, one elsewhere and one over the first: the same bytes and digests every time."""
    out, first = built
    other = make_image(tmp_path / "elsewhere", wasm_file)
    again = make_image(out, wasm_file)
    paths = ("layout", "archive")
    strip = lambda s: {k: v for k, v in s.items() if k not in paths}  # noqa: E731
    assert strip(other) == strip(first) == strip(again)
    assert tree(tmp_path / "elsewhere") == tree(out)
    assert sorted(p.name for p in out.iterdir()) == ["devgate", "devgate.tar"], "temporary files left behind"


def test_another_module_another_digest(tmp_path, wasm_file):
    """The digest follows the module: one byte more (a trailing custom section would do) changes both."""
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(wasm_file.read_bytes())
    b.write_bytes(wasm_file.read_bytes() + b"\0\x01\0")  # an empty custom section: still a valid module
    sa, sb = make_image(tmp_path / "a", a), make_image(tmp_path / "b", b)
    assert sa["manifest_digest"] != sb["manifest_digest"]
    assert sa["plugin_wasm_sha256"] != sb["plugin_wasm_sha256"]


def test_tag_option(tmp_path, wasm_file):
    s = make_image(tmp_path / "t", wasm_file, "--tag", "v9.9.9-rc.1")
    index = json.loads((tmp_path / "t" / "devgate" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v9.9.9-rc.1"
    assert s["tag"] == "v9.9.9-rc.1"
    r = run_script("--wasm", str(wasm_file), "--out", str(tmp_path / "bad"), "--tag", "a/b")
    assert r.returncode == 1 and "tag" in r.stderr


def test_refuses_what_is_not_a_module(tmp_path):
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"#!/bin/sh\necho not wasm\n")
    r = run_script("--wasm", str(junk), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "not a WebAssembly module" in r.stderr, r.stderr
    assert not (tmp_path / "o" / "devgate").exists()
    r = run_script("--wasm", str(tmp_path / "missing.wasm"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "make build" in r.stderr, r.stderr


def test_human_output_says_which_digest_goes_where(tmp_path, wasm_file):
    r = run_script("--wasm", str(wasm_file), "--out", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    s = make_image(tmp_path / "h", wasm_file)
    manifest_hex = s["manifest_digest"].split(":", 1)[1]
    lines = r.stdout.splitlines()
    oci_line = next(i for i, line in enumerate(lines) if "url: oci://REGISTRY/devgate:" in line)
    assert f"sha256: {manifest_hex}" in lines[oci_line + 1] and "manifest digest" in lines[oci_line + 1]
    https_line = next(i for i, line in enumerate(lines) if "url: https://" in line)
    assert f"sha256: {s['plugin_wasm_sha256']}" in lines[https_line + 1]
    assert f"devgate@{s['manifest_digest']}" in r.stdout
    assert "skopeo copy --preserve-digests oci-archive:" in r.stdout
