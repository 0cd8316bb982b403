"""The shipped Kubernetes manifests (envoy/istio/*.yaml, envoy/gateway/*.yaml) against the APIs they
target, without a cluster: every resource against a hand-written schema of its API (k8s_schemas.py
names the references), the project's rules (image pinned to the digest of the committed source,
fail closed, inbound only, keys only by reference), and a scan for key material in plain text. The
README's and docs' Kubernetes YAML blocks get the same checks. The checker is itself tested: each
kind of mistake it exists for is refused.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

import harness
import k8s_schemas
from conftest import call_or_fail

REPO = harness.REPO
ISTIO = REPO / "envoy" / "istio" / "wasmplugin.yaml"
GATEWAY = REPO / "envoy" / "gateway" / "envoyextensionpolicy.yaml"
REPIN = "run `make pin-image` and commit the manifests"


def shipped_manifests() -> list[Path]:
    """Every YAML file under envoy/istio and envoy/gateway: all of them are Kubernetes manifests."""
    files = sorted(p for d in ("istio", "gateway") for p in (REPO / "envoy" / d).glob("*.yaml"))
    assert ISTIO in files and GATEWAY in files, files
    return files


def load(path: Path) -> tuple[list, str]:
    text = path.read_text()
    return [d for d in yaml.safe_load_all(text) if d is not None], text


def docs_yaml_blocks() -> list[tuple[str, str]]:
    """(name, text) of every ```yaml block in README.md and docs/*.md that is a Kubernetes object."""
    out = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", md.read_text(), re.S)):
            if re.search(r"^apiVersion:", block, re.M) and re.search(r"^kind:", block, re.M):
                out.append((f"{md.relative_to(REPO)} yaml block {i}", block))
    return out


def by_kind(docs: list, kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_manifest_passes_its_api_schemas_and_the_rules(path):
    docs, text = load(path)
    assert docs, f"{path}: no documents"
    problems = k8s_schemas.check(docs, text, str(path.relative_to(REPO)))
    assert not problems, "\n".join(problems)


def test_readme_and_docs_kubernetes_examples_pass_the_same_checks():
    blocks = docs_yaml_blocks()
    kinds = {d.get("kind") for _, b in blocks for d in yaml.safe_load_all(b) if d}
    assert {"WasmPlugin", "EnvoyExtensionPolicy"} <= kinds, f"README lost its mesh examples: {kinds}"
    problems = []
    for name, block in blocks:
        docs = [d for d in yaml.safe_load_all(block) if d is not None]
        problems += k8s_schemas.check(docs, block, name)
    assert not problems, "\n".join(problems)


def test_istio_example_hands_the_key_from_a_secret_to_the_vm():
    """Secret -> istio-proxy env secretKeyRef -> vmConfig.env valueFrom HOST -> keys[].secret_env, every
    link by name, and no other way in (the old example used proxyMetadata and a file mount)."""
    docs, text = load(ISTIO)
    secret, deploy, plugin = by_kind(docs, "Secret"), by_kind(docs, "Deployment"), by_kind(docs, "WasmPlugin")
    wanted = {k["secret_env"] for k in plugin["spec"]["pluginConfig"]["keys"]}
    proxy = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"]
    assert len(proxy) == 1 and proxy[0]["image"] == "auto", "the sidecar customisation is a container istio-proxy"
    env = {e["name"]: e for e in proxy[0]["env"]}
    host = {e["name"] for e in plugin["spec"]["vmConfig"]["env"] if e.get("valueFrom") == "HOST"}
    for name in wanted:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], name), ref
        assert ref["key"] in secret["stringData"]
        assert name in host, f"{name} not passed to the VM with valueFrom: HOST"
    assert secret["metadata"]["namespace"] == deploy["metadata"]["namespace"] == plugin["metadata"]["namespace"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert plugin["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the selector misses the pods"
    assert "proxyMetadata" not in yaml.safe_dump(docs) and "userVolume" not in text


def test_gateway_example_hands_the_key_from_a_secret_to_the_vm():
    """Secret (where the proxies run) -> EnvoyProxy container env secretKeyRef -> env.hostKeys ->
    keys[].secret_env; the Gateway uses that EnvoyProxy and the policy targets that Gateway."""
    docs, _ = load(GATEWAY)
    secret, proxy = by_kind(docs, "Secret"), by_kind(docs, "EnvoyProxy")
    gateway, policy = by_kind(docs, "Gateway"), by_kind(docs, "EnvoyExtensionPolicy")
    (wasm,) = policy["spec"]["wasm"]
    wanted = {k["secret_env"] for k in wasm["config"]["keys"]}
    env = {e["name"]: e for e in proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]}
    for name in wanted:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], name), ref
        assert name in secret["stringData"] and name in wasm["env"]["hostKeys"]
    assert secret["metadata"]["namespace"] == "envoy-gateway-system", "the Secret goes where the proxies run"
    ref = gateway["spec"]["infrastructure"]["parametersRef"]
    assert (ref["group"], ref["kind"], ref["name"]) == ("gateway.envoyproxy.io", "EnvoyProxy", proxy["metadata"]["name"])
    (target,) = policy["spec"]["targetRefs"]
    assert (target["kind"], target["name"]) == ("Gateway", gateway["metadata"]["name"])
    assert wasm["failOpen"] is False and wasm["code"]["type"] == "Image"


def test_wasmplugin_needs_istio_1_27_and_says_so():
    """FAIL_RELOAD exists from Istio 1.27 (1.26 refuses it): the manifest and the README name the floor
    and the strategy to use before it."""
    docs, text = load(ISTIO)
    assert by_kind(docs, "WasmPlugin")["spec"]["failStrategy"] == "FAIL_RELOAD"
    for where, body in (("wasmplugin.yaml", text), ("README.md", (REPO / "README.md").read_text())):
        assert "Istio 1.27" in body and "FAIL_CLOSE" in body, f"{where} does not name the version floor"


def _oci_image():
    spec = importlib.util.spec_from_file_location("oci_image", REPO / "envoy" / "istio" / "oci_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifests_pin_the_image_built_from_this_source():
    """The committed sha256 (and tag) of every pinned manifest is the image manifest digest of the
    devgate.wasm built from this checkout, as `make image` prints it."""
    oci = _oci_image()
    wasm = call_or_fail(harness.wasm_path)
    tag = oci.crate_version()
    _, summary = oci.build(wasm.read_bytes(), tag)
    digest = summary["manifest_digest"].removeprefix("sha256:")
    assert {ISTIO, GATEWAY, REPO / "README.md"} <= set(oci.PINNED)
    stale = []
    for path in oci.PINNED:
        text = path.read_text()
        if oci.pinned_text(text, digest, tag) != text:
            stale.append(str(path.relative_to(REPO)))
    assert not stale, (f"{stale} do not pin the image of this source (sha256 {digest}, tag {tag}): {REPIN}. "
                       "(Built with another rustc or CARGO_HOME? devgate.wasm embeds both, so the digest follows.)")
    istio, gateway = load(ISTIO)[0], load(GATEWAY)[0]
    assert by_kind(istio, "WasmPlugin")["spec"]["sha256"] == digest
    assert by_kind(istio, "WasmPlugin")["spec"]["url"].endswith(f"/devgate:{tag}")
    image = by_kind(gateway, "EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"]["image"]
    assert image["sha256"] == digest and image["url"].endswith(f"/devgate:{tag}")


def test_pin_rewrites_digest_and_tag_and_is_idempotent(tmp_path):
    oci = _oci_image()
    copy_ = tmp_path / "m.yaml"
    copy_.write_text(ISTIO.read_text().replace("devgate:0.1.0", "devgate:0.0.9"))
    new = "ab" * 32
    assert oci.pin(new, "9.9.9", files=(copy_,)) == [copy_]
    plugin = by_kind(load(copy_)[0], "WasmPlugin")
    assert plugin["spec"]["sha256"] == new and plugin["spec"]["url"].endswith("/devgate:9.9.9")
    assert oci.pin(new, "9.9.9", files=(copy_,)) == [], "a second pin must change nothing"
    bare = tmp_path / "bare.yaml"
    bare.write_text("kind: WasmPlugin\n")
    with pytest.raises(ValueError, match="no `sha256:` line"):
        oci.pin(new, "9.9.9", files=(bare,))


# -- the checker refuses each mistake it exists for -----------------------------------------------


def problems_after(path: Path, mutate) -> list[str]:
    docs, text = load(path)
    docs = copy.deepcopy(docs)
    mutate(docs)
    return k8s_schemas.check(docs, yaml.safe_dump_all(docs), "mutated")


def plugin_spec(docs):
    return by_kind(docs, "WasmPlugin")["spec"]


def wasm0(docs):
    return by_kind(docs, "EnvoyExtensionPolicy")["spec"]["wasm"][0]


def _set(d: dict, key, value):
    d[key] = value


REFUSED = {
    "unknown field": (ISTIO, lambda d: _set(plugin_spec(d), "failStrategyy", "FAIL_CLOSE"), "failStrategyy"),
    "FAIL_OPEN": (ISTIO, lambda d: _set(plugin_spec(d), "failStrategy", "FAIL_OPEN"), "FAIL_OPEN"),
    "failStrategy left to default": (ISTIO, lambda d: plugin_spec(d).pop("failStrategy"), "failStrategy"),
    "unknown phase": (ISTIO, lambda d: _set(plugin_spec(d), "phase", "AUTHENTICATION"), "phase"),
    "short sha256": (ISTIO, lambda d: _set(plugin_spec(d), "sha256", "16f3344b"), "sha256"),
    "uppercase sha256": (ISTIO, lambda d: _set(plugin_spec(d), "sha256", plugin_spec(d)["sha256"].upper()), "sha256"),
    "no sha256": (ISTIO, lambda d: plugin_spec(d).pop("sha256"), "not pinned"),
    "ftp url": (ISTIO, lambda d: _set(plugin_spec(d), "url", "ftp://registry.example.com/devgate.wasm"), "url"),
    "no url": (ISTIO, lambda d: plugin_spec(d).pop("url"), "'url' is a required property"),
    "outbound too": (ISTIO, lambda d: _set(plugin_spec(d), "match", [{"mode": "CLIENT_AND_SERVER"}]), "match"),
    "no match": (ISTIO, lambda d: plugin_spec(d).pop("match"), "match"),
    "unknown match mode": (ISTIO, lambda d: _set(plugin_spec(d), "match", [{"mode": "INBOUND"}]), "mode"),
    "port 0": (ISTIO, lambda d: _set(plugin_spec(d), "match", [{"mode": "SERVER", "ports": [{"number": 0}]}]),
               "number"),
    "value with HOST": (ISTIO, lambda d: plugin_spec(d)["vmConfig"]["env"][0].update(value="x"), "vmConfig.env[0]"),
    "unknown valueFrom": (ISTIO, lambda d: plugin_spec(d)["vmConfig"]["env"][0].update(valueFrom="SECRET"),
                          "valueFrom"),
    "key inline in vmConfig": (ISTIO, lambda d: _set(plugin_spec(d)["vmConfig"], "env",
                                                     [{"name": "DEVGATE_K1", "value": "x", "valueFrom": "INLINE"}]),
                               "valueFrom: HOST"),
    "selector and targetRefs": (ISTIO, lambda d: _set(plugin_spec(d), "targetRefs",
                                                      [{"kind": "Service", "group": "", "name": "demo"}]), "should not"),
    "plain-text secret": (ISTIO, lambda d: by_kind(d, "Secret")["stringData"].update(
        DEVGATE_K1="k3y-material-that-is-not-a-placeholder"), "plain text"),
    "base64 data": (ISTIO, lambda d: _set(by_kind(d, "Secret"), "data", {"DEVGATE_K1": "AAAA"}), "stringData"),
    "env literal value": (ISTIO, lambda d: by_kind(d, "Deployment")["spec"]["template"]["spec"]["containers"][1][
        "env"][0].update(value="x", valueFrom=None) or by_kind(d, "Deployment")["spec"]["template"]["spec"][
        "containers"][1]["env"][0].pop("valueFrom"), "literal value"),
    "proxyMetadata": (ISTIO, lambda d: _set(by_kind(d, "Deployment")["spec"]["template"]["metadata"], "annotations",
                                            {"proxy.istio.io/config": "proxyMetadata:\n  DEVGATE_K1: x\n"}),
                      "annotation"),
    "inline key in pluginConfig": (ISTIO, lambda d: plugin_spec(d)["pluginConfig"]["keys"][0].update(secret="x"),
                                   "credential inline"),
    "failOpen true": (GATEWAY, lambda d: _set(wasm0(d), "failOpen", True), "failOpen"),
    "failOpen left to default": (GATEWAY, lambda d: wasm0(d).pop("failOpen"), "failOpen"),
    "gateway short sha256": (GATEWAY, lambda d: _set(wasm0(d)["code"]["image"], "sha256", "abc"), "sha256"),
    "gateway no sha256": (GATEWAY, lambda d: wasm0(d)["code"]["image"].pop("sha256"), "not pinned"),
    "gateway image url with scheme": (GATEWAY, lambda d: _set(wasm0(d)["code"]["image"], "url",
                                                              "oci://registry.example.com/devgate:0.1.0"), "url"),
    "gateway unknown code type": (GATEWAY, lambda d: _set(wasm0(d)["code"], "type", "ConfigMap"), "type"),
    "gateway type HTTP without http": (GATEWAY, lambda d: _set(wasm0(d)["code"], "type", "HTTP"), "http"),
    "gateway unknown field": (GATEWAY, lambda d: _set(wasm0(d), "vmID", "x"), "vmID"),
    "gateway hostKey not a name": (GATEWAY, lambda d: _set(wasm0(d)["env"], "hostKeys", ["DEVGATE K1"]), "hostKeys"),
    "gateway unknown kind": (GATEWAY, lambda d: _set(by_kind(d, "EnvoyProxy"), "apiVersion", "gateway.envoyproxy.io/v1"),
                             "no schema"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_checker_refuses(case):
    path, mutate, needle = REFUSED[case]
    problems = problems_after(path, mutate)
    assert any(needle in p for p in problems), f"{case}: not refused: {problems}"


def test_checker_finds_a_key_in_a_comment():
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"  # the shape `devgate keygen` prints
    text = ISTIO.read_text() + f"\n# DEVGATE_K1: {key}\n"
    problems = k8s_schemas.text_problems(text, "x")
    assert any("key-like" in p for p in problems), problems
    assert not k8s_schemas.text_problems(ISTIO.read_text(), "x"), "the pinned sha256 line is not a key"


def test_old_example_would_have_been_refused():
    """The example as it was before the manifests were pinned and checked: unpinned, no match, the key through proxyMetadata and a
    Secret volume the VM cannot read. Kept inline so the regression stays visible."""
    old = """
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: devgate, namespace: demo}
spec:
  selector: {matchLabels: {app: demo}}
  phase: AUTHN
  failStrategy: FAIL_RELOAD
  url: oci://registry.example.com/devgate:0.1.0
  # sha256: <manifest digest printed by make image>
  vmConfig:
    env: [{name: DEVGATE_K1, valueFrom: HOST}]
#   annotations:
#     sidecar.istio.io/userVolume: '[{"name":"devgate-keys","secret":{"secretName":"devgate-keys"}}]'
#     proxy.istio.io/config: |
#       proxyMetadata:
#         DEVGATE_K1: "..."
"""
    problems = k8s_schemas.check(list(yaml.safe_load_all(old)), old, "old")
    for needle in ("not pinned", "spec.match", "proxyMetadata", "cannot read files"):
        assert any(needle in p for p in problems), (needle, problems)
