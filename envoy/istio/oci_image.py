#!/usr/bin/env python3
"""Package devgate.wasm as an OCI image Istio's WasmPlugin can pull (`make image`). Standard library only.

Writes, under --out (default target/oci):
  devgate/       an OCI image layout (oci-layout, index.json, blobs/sha256/...)
  devgate.tar    the same layout as one tarball, for `skopeo copy oci-archive:...`
and prints the image manifest digest and the sha256 of plugin.wasm.

The format is the *compat* variant of the Wasm image specification (solo-io/wasm, spec/spec-compat.md),
the one Istio's agent reads first (istio/istio pkg/wasm/imagefetcher.go: for an OCI manifest it takes the
last layer, requires the media type application/vnd.oci.image.layer.v1.tar+gzip, and extracts the tar
entry whose base name is `plugin.wasm`):
  - an ordinary OCI image manifest (application/vnd.oci.image.manifest.v1+json),
  - an ordinary image config (application/vnd.oci.image.config.v1+json; architecture wasm, os wasip1),
  - exactly one layer, application/vnd.oci.image.layer.v1.tar+gzip, annotated
    org.opencontainers.image.title: plugin.wasm, whose tar holds the single file `plugin.wasm`.
It is what `FROM scratch` + `COPY devgate.wasm ./plugin.wasm` would build, minus the variable metadata.

Reproducible: the tar entry has mode 0644, uid/gid 0, no user or group names and mtime 0 (ustar, no pax
headers); gzip has mtime 0 and no file name; JSON is written with sorted keys and no timestamps. The same
devgate.wasm therefore always gives the same digests, given the same deflate: the layer is compressed by
Python's zlib at level 9, the system zlib on Debian and Ubuntu; a Python built on zlib-ng compresses
differently and so names the same module with another digest.

Which digest goes where in a WasmPlugin:
  url: oci://REGISTRY/devgate:TAG       sha256: <manifest digest, hex without "sha256:">
      (Istio compares the pulled image's *manifest* digest with `sha256`, not the module's hash;
       or pin the URL itself: url: oci://REGISTRY/devgate@sha256:<manifest digest>)
  url: https://HOST/devgate.wasm        sha256: <sha256 of plugin.wasm>
The manifest digest survives a push as long as the manifest is copied unchanged:
  skopeo copy --preserve-digests oci-archive:target/oci/devgate.tar:TAG docker://REGISTRY/devgate:TAG

Pinning (`make pin-image`, `--pin`): the shipped Kubernetes manifests (PINNED below) carry the
manifest digest of the image built from the committed source, and the crate version as the tag;
--pin rewrites their `sha256:` lines and `devgate:TAG` references to this build's and says which
files changed. Idempotent: a second run changes nothing. tests/e2e/test_manifests.py fails while a
manifest differs from the build. devgate.wasm, and so the digest, is the same from any checkout on any
machine when built by `make build`: rust-toolchain.toml pins the rustc whose commit the module embeds,
and the Makefile remaps the checkout, CARGO_HOME and the toolchain's directory out of it (`make
repro-check` shows two builds agree).

A Docker daemon is never used: a `docker build` image carries build timestamps and host metadata, so
its digest would differ from run to run and from what this script prints.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "devgate.wasm"
DEFAULT_OUT = REPO / "target" / "oci"
NAME = "devgate"

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The shipped manifests whose image digest and tag `--pin` keeps equal to this build's.
PINNED = (REPO / "envoy" / "istio" / "wasmplugin.yaml", REPO / "envoy" / "gateway" / "envoyextensionpolicy.yaml",
          REPO / "README.md")  # its WasmPlugin and EnvoyExtensionPolicy blocks
PLUGIN_FILE = "plugin.wasm"  # the file name Istio's compat-variant reader looks for
WASM_MAGIC = b"\x00asm"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def _tar_info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(wasm: bytes) -> bytes:
    """The uncompressed layer: one regular file, plugin.wasm, fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_tar_info(PLUGIN_FILE, len(wasm)), io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def descriptor(media_type: str, blob: bytes, annotations: dict | None = None) -> dict:
    d = {"mediaType": media_type, "digest": "sha256:" + sha256_hex(blob), "size": len(blob)}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def crate_version() -> str:
    """`version` of Cargo.toml's [package] (a line scan: tomllib is Python 3.11+ only)."""
    section = ""
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line
        elif section == "[package]":
            m = re.fullmatch(r'version\s*=\s*"([^"]+)"', line)
            if m:
                return m.group(1)
    raise ValueError("no [package] version in Cargo.toml: pass --tag")


def build(wasm: bytes, tag: str) -> tuple[dict, dict]:
    """The image as {digest hex: blob bytes} plus its index.json, and a summary."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise ValueError(f"not a valid image tag: {tag!r}")
    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = canonical_json({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(tar)]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, layer, {"org.opencontainers.image.title": PLUGIN_FILE})],
        "annotations": {"org.opencontainers.image.title": NAME, "org.opencontainers.image.version": tag},
    })
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [descriptor(MANIFEST_MEDIA_TYPE, manifest, {"org.opencontainers.image.ref.name": tag})],
    }
    blobs = {sha256_hex(b): b for b in (layer, config, manifest)}
    summary = {
        "tag": tag,
        "manifest_digest": "sha256:" + sha256_hex(manifest),
        "config_digest": "sha256:" + sha256_hex(config),
        "layer_digest": "sha256:" + sha256_hex(layer),
        "plugin_wasm_sha256": sha256_hex(wasm),
        "plugin_wasm_size": len(wasm),
    }
    return {"blobs": blobs, "index": index}, summary


def layout_files(image: dict) -> list[tuple[str, bytes | None]]:
    """(relative path, content or None for a directory), in a fixed order."""
    files: list[tuple[str, bytes | None]] = [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", canonical_json(image["index"])),
        ("blobs", None),
        ("blobs/sha256", None),
    ]
    files += [(f"blobs/sha256/{h}", image["blobs"][h]) for h in sorted(image["blobs"])]
    return files


def archive(files: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in files:
            if data is None:
                tar.addfile(_tar_info(path, directory=True))
            else:
                tar.addfile(_tar_info(path, len(data)), io.BytesIO(data))
    return buf.getvalue()


def write(out: Path, image: dict) -> tuple[Path, Path]:
    """Write out/devgate/ and out/devgate.tar, each replaced whole (written beside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    files = layout_files(image)
    layout, tarball = out / NAME, out / f"{NAME}.tar"
    tmp = out / f".{NAME}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for path, data in files:
        p = tmp / path
        if data is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.write_bytes(data)
            p.chmod(0o644)
    if layout.exists():
        shutil.rmtree(layout)
    tmp.rename(layout)
    tmp_tar = out / f".{NAME}.tar.tmp-{os.getpid()}"
    tmp_tar.write_bytes(archive(files))
    tmp_tar.replace(tarball)
    return layout, tarball


SHA256_LINE = re.compile(r"^(?P<key>[ \t]*sha256:[ \t]*)(?P<value>[^\s#]*)", re.M)
IMAGE_TAG = re.compile(r"(?P<ref>\b" + NAME + r":)(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)")


def pinned_text(text: str, manifest_hex: str, tag: str) -> str:
    """text with every `sha256:` value set to manifest_hex and every `devgate:TAG` to tag."""
    text = SHA256_LINE.sub(lambda m: m.group("key") + manifest_hex, text)
    return IMAGE_TAG.sub(lambda m: m.group("ref") + tag, text)


def pin(manifest_hex: str, tag: str, files=PINNED) -> list[Path]:
    """Rewrite the shipped manifests to this digest and tag; the files that changed."""
    changed = []
    for path in files:
        old = path.read_text()
        new = pinned_text(old, manifest_hex, tag)
        if SHA256_LINE.search(new) is None:
            raise ValueError(f"{path}: no `sha256:` line to pin")
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help="the module (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output directory; gets devgate/ and devgate.tar (default: %(default)s)")
    ap.add_argument("--tag", default=None, help="image tag, also org.opencontainers.image.ref.name "
                                                "(default: the crate version from Cargo.toml)")
    ap.add_argument("--json", action="store_true", help="print the digests as one JSON object")
    ap.add_argument("--pin", action="store_true",
                    help="also write this image's digest and tag into the shipped manifests (make pin-image)")
    args = ap.parse_args(argv)

    if not args.wasm.is_file():
        print(f"oci_image: {args.wasm} not found: run `make build` first", file=sys.stderr)
        return 1
    try:
        tag = args.tag or crate_version()
        image, summary = build(args.wasm.read_bytes(), tag)
    except ValueError as e:
        print(f"oci_image: {e}", file=sys.stderr)
        return 1
    layout, tarball = write(args.out, image)
    if args.pin:
        manifest_hex = summary["manifest_digest"].removeprefix("sha256:")
        try:
            changed = pin(manifest_hex, tag)
        except (OSError, ValueError) as e:
            print(f"oci_image: {e}", file=sys.stderr)
            return 1
        for path in PINNED:
            state = "pinned" if path in changed else "already pinned"
            print(f"{state}: {path.relative_to(REPO)} (sha256 {manifest_hex}, tag {tag})", file=sys.stderr)
    summary.update({"layout": str(layout), "archive": str(tarball),
                    "archive_sha256": sha256_hex(tarball.read_bytes())})
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    manifest_hex = summary["manifest_digest"].removeprefix("sha256:")
    print(f"""devgate OCI image (Wasm image spec, compat variant: one {LAYER_MEDIA_TYPE} layer with {PLUGIN_FILE})
  layout:              {layout}/
  archive:             {tarball}
  tag:                 {tag}
  manifest digest:     {summary['manifest_digest']}
  plugin.wasm sha256:  {summary['plugin_wasm_sha256']}  ({summary['plugin_wasm_size']} bytes)

WasmPlugin, image pulled by tag:  url: oci://REGISTRY/devgate:{tag}
                                  sha256: {manifest_hex}   (the manifest digest)
  or pinned by digest:            url: oci://REGISTRY/devgate@{summary['manifest_digest']}
WasmPlugin, module over HTTPS:    url: https://HOST/devgate.wasm
                                  sha256: {summary['plugin_wasm_sha256']}   (the module's own hash)
push (keeps the manifest digest): skopeo copy --preserve-digests oci-archive:{tarball}:{tag} docker://REGISTRY/devgate:{tag}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
