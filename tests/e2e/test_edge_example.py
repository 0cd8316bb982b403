"""envoy/envoy-edge.yaml, the shipped example of developers the edge already knows (docs/edge.md,
docs/client-certificates.md): Envoy accepts it as written (`envoy --mode validate`, which loads the
listener's certificates and the devgate filter with its configuration), and the Envoy YAML those
docs show is this file's text, so the docs cannot drift from a config that loads. (`devgate
check-config` checks its devgate configuration through envoy/SHIPPED.)"""

from __future__ import annotations

import subprocess

import harness

EXAMPLE = harness.REPO / "envoy" / "envoy-edge.yaml"
DOCS = [harness.REPO / "docs" / "edge.md", harness.REPO / "docs" / "client-certificates.md"]


def significant(lines: list[str]) -> list[str]:
    """Lines as YAML content, without indentation, list dashes or comments."""
    out = []
    for line in lines:
        text = line.strip()
        if text.startswith("- "):
            text = text[2:].strip()
        if text and not text.startswith("#"):
            out.append(text)
    return out


def yaml_blocks(doc: str) -> list[str]:
    return [block.split("```", 1)[0] for block in doc.split("```yaml\n")[1:]]


def test_the_docs_envoy_yaml_is_the_shipped_example():
    example = significant(EXAMPLE.read_text().splitlines())
    checked = 0
    for doc in DOCS:
        for i, block in enumerate(yaml_blocks(doc.read_text())):
            want = significant(block.splitlines())
            rest = iter(example)
            missing = [line for line in want if not any(line == have for have in rest)]
            assert not missing, f"{doc.name} yaml block {i}: not in order in {EXAMPLE.name}: {missing[:3]}"
            checked += 1
    assert checked >= 2, "docs/edge.md and docs/client-certificates.md each show the example's YAML"


def test_envoy_validates_the_example():
    r = subprocess.run(
        [str(harness.envoy_path()), "--mode", "validate", "-c", str(EXAMPLE), "--log-level", "warn"],
        cwd=harness.REPO, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
