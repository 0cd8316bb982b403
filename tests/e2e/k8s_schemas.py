"""The Kubernetes APIs devgate's shipped manifests target, as JSON Schemas written by hand from each
API's reference, and the project's own rules on top (pinned image, fail closed, inbound only, no
secret in plain text). Used by tests/e2e/test_manifests.py; needs no cluster.

Sources (read, not copied; field names, enums, patterns and required fields as they state them):
  v1 Secret, apps/v1 Deployment, Container, EnvVar, EnvVarSource:
      https://kubernetes.io/docs/reference/kubernetes-api/ (config-and-storage-resources/secret-v1,
      workload-resources/deployment-v1, workload-resources/pod-v1#environment-variables)
  Istio WasmPlugin (extensions.istio.io/v1alpha1):
      https://istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/ and the proto and
      CRD it is generated from, istio/api extensions/v1alpha1/wasm.proto and
      kubernetes/customresourcedefinitions.gen.yaml (url scheme rule, sha256 pattern, the
      value-only-when-INLINE rule, FAIL_RELOAD from Istio 1.27)
  Istio sidecar customisation (a container named istio-proxy merged into the injected sidecar):
      https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/#customizing-injection
  Envoy Gateway EnvoyExtensionPolicy, EnvoyProxy (gateway.envoyproxy.io/v1alpha1):
      https://gateway.envoyproxy.io/docs/api/extension_types/ and envoyproxy/gateway
      api/v1alpha1/wasm_types.go, envoyextensionpolicy_types.go, envoyproxy_types.go
  Gateway (gateway.networking.k8s.io/v1): https://gateway-api.sigs.k8s.io/reference/spec/

Each schema models the part of its API the examples use, with `additionalProperties: false`
everywhere: a misspelt or invented field is refused, and so is a real field nobody modelled yet
(add it here, from the reference, when an example needs it). Free-form objects are only the
plugin configurations (pluginConfig, config), which `devgate check-config` validates.
"""

from __future__ import annotations

import re

# -- shared pieces -----------------------------------------------------------------------------

SHA256_HEX = "^[a-f0-9]{64}$"  # 64 lowercase hex characters (Istio's CRD pattern, minus the empty case)
DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # RFC 1123 label, at most 63
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"  # C identifier: what Envoy's environment and the VM accept
LABELS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}}


def obj(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def string(**kw) -> dict:
    return {"type": "string", **kw}


METADATA = obj(
    {
        "name": string(pattern=DNS_SUBDOMAIN, maxLength=253),
        "namespace": string(pattern=DNS_LABEL, maxLength=63),
        "labels": LABELS,
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    ("name",),
)


def resource(api_version: str, kind: str, spec: dict | None, extra: dict | None = None,
             required: tuple = ("spec",)) -> dict:
    props = {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": METADATA}
    if spec is not None:
        props["spec"] = spec
    props.update(extra or {})
    return obj(props, ("apiVersion", "kind", "metadata", *required))


# -- core/v1: Secret, and the EnvVar of a Container ---------------------------------------------

SECRET = resource(
    "v1",
    "Secret",
    None,
    {
        "type": string(minLength=1),
        "immutable": {"type": "boolean"},
        "stringData": {"type": "object", "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
                       "additionalProperties": {"type": "string"}},
        "data": {"type": "object", "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
                 "additionalProperties": string(pattern="^[A-Za-z0-9+/]*={0,2}$")},
    },
    required=(),
)

KEY_SELECTOR = obj({"name": string(minLength=1), "key": string(minLength=1), "optional": {"type": "boolean"}},
                   ("key",))
ENV_VAR = {
    **obj(
        {
            "name": string(minLength=1),
            "value": {"type": "string"},
            "valueFrom": {
                **obj({
                    "secretKeyRef": KEY_SELECTOR,
                    "configMapKeyRef": KEY_SELECTOR,
                    "fieldRef": obj({"apiVersion": string(), "fieldPath": string(minLength=1)}, ("fieldPath",)),
                }),
                "minProperties": 1,
                "maxProperties": 1,
            },
        },
        ("name",),
    ),
    # EnvVar: `value` and `valueFrom` are exclusive.
    "not": {"required": ["value", "valueFrom"]},
}

CONTAINER = obj(
    {
        "name": string(pattern=DNS_LABEL, maxLength=63),
        "image": string(minLength=1),
        "ports": {"type": "array", "items": obj({
            "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
            "name": string(pattern=DNS_LABEL, maxLength=15),
            "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
        }, ("containerPort",))},
        "env": {"type": "array", "items": ENV_VAR},
    },
    ("name",),
)

# -- apps/v1 Deployment ---------------------------------------------------------------------------

DEPLOYMENT = resource(
    "apps/v1",
    "Deployment",
    obj(
        {
            "replicas": {"type": "integer", "minimum": 0},
            "selector": obj({"matchLabels": LABELS}, ("matchLabels",)),
            "template": obj(
                {
                    "metadata": obj({"labels": LABELS, "annotations": {"type": "object"}}),
                    "spec": obj({"containers": {"type": "array", "minItems": 1, "items": CONTAINER}},
                                ("containers",)),
                },
                ("metadata", "spec"),
            ),
        },
        ("selector", "template"),
    ),
)

# -- Istio extensions.istio.io/v1alpha1 WasmPlugin ---------------------------------------------------

POLICY_TARGET_REF = obj(
    {
        "group": string(maxLength=253, pattern=r"^$|" + DNS_SUBDOMAIN[1:]),
        "kind": string(minLength=1, maxLength=63, pattern="^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"),
        "name": string(minLength=1, maxLength=253),
        "namespace": string(maxLength=0),  # "cross namespace referencing is not currently supported"
    },
    ("kind", "name"),
)

WASM_PLUGIN = resource(
    "extensions.istio.io/v1alpha1",
    "WasmPlugin",
    {
        **obj(
            {
                "selector": obj({"matchLabels": {**LABELS, "minProperties": 1}}),
                "targetRef": POLICY_TARGET_REF,
                "targetRefs": {"type": "array", "maxItems": 16, "items": POLICY_TARGET_REF},
                # No scheme means oci://; otherwise one of the four the CRD allows.
                "url": string(minLength=1, pattern=r"^(?:(?:oci|https?|file)://|(?![a-zA-Z][a-zA-Z0-9+.-]*://))\S+$"),
                "sha256": string(pattern=r"^$|" + SHA256_HEX[1:]),
                "imagePullPolicy": {"enum": ["UNSPECIFIED_POLICY", "IfNotPresent", "Always"]},
                "imagePullSecret": string(minLength=1, maxLength=253),
                "verificationKey": string(),
                "pluginConfig": {"type": "object"},
                "pluginName": string(minLength=1, maxLength=256),
                "phase": {"enum": ["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"]},
                "priority": {"type": ["integer", "null"], "minimum": -(2**31), "maximum": 2**31 - 1},
                "failStrategy": {"enum": ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]},
                "vmConfig": obj({
                    "env": {
                        "type": "array",
                        "maxItems": 256,
                        "items": {
                            **obj({
                                "name": string(minLength=1, maxLength=256),
                                "value": string(maxLength=2048),
                                "valueFrom": {"enum": ["INLINE", "HOST"]},
                            }, ("name",)),
                            # "value may only be set when valueFrom is INLINE"
                            "if": {"required": ["valueFrom"], "properties": {"valueFrom": {"const": "HOST"}}},
                            "then": {"not": {"required": ["value"]}},
                        },
                    },
                }),
                "match": {"type": "array", "items": obj({
                    "mode": {"enum": ["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"]},
                    "ports": {"type": "array", "items": obj(
                        {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}, ("number",))},
                })},
                "type": {"enum": ["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"]},
            },
            ("url",),
        ),
        # "only one of targetRefs or selector can be set"
        "not": {"anyOf": [{"required": ["selector", "targetRefs"]}, {"required": ["selector", "targetRef"]},
                          {"required": ["targetRef", "targetRefs"]}]},
    },
)

# -- Gateway API gateway.networking.k8s.io/v1 Gateway ----------------------------------------------

GATEWAY = resource(
    "gateway.networking.k8s.io/v1",
    "Gateway",
    obj(
        {
            "gatewayClassName": string(minLength=1, maxLength=253),
            "infrastructure": obj({
                "labels": LABELS,
                "annotations": {"type": "object"},
                "parametersRef": obj({"group": string(), "kind": string(minLength=1), "name": string(minLength=1)},
                                     ("group", "kind", "name")),
            }),
            "listeners": {"type": "array", "minItems": 1, "maxItems": 64, "items": obj({
                "name": string(pattern=DNS_LABEL, maxLength=253),
                "hostname": string(),
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "protocol": string(minLength=1),
            }, ("name", "port", "protocol"))},
        },
        ("gatewayClassName", "listeners"),
    ),
)

# -- Envoy Gateway gateway.envoyproxy.io/v1alpha1 EnvoyProxy, EnvoyExtensionPolicy ----------------

ENVOY_PROXY = resource(
    "gateway.envoyproxy.io/v1alpha1",
    "EnvoyProxy",
    obj({
        "provider": obj({
            "type": {"enum": ["Kubernetes", "Custom"]},
            "kubernetes": obj({
                "envoyDeployment": obj({
                    "replicas": {"type": "integer", "minimum": 0},
                    "container": obj({"env": {"type": "array", "items": ENV_VAR}, "image": string()}),
                }),
            }),
        }, ("type",)),
    }),
)

LOCAL_TARGET_REF = obj(
    {
        "group": string(maxLength=253, pattern=r"^$|" + DNS_SUBDOMAIN[1:]),
        "kind": string(minLength=1, maxLength=63),
        "name": string(minLength=1, maxLength=253),
        "sectionName": string(minLength=1, maxLength=253),
    },
    ("group", "kind", "name"),
)

WASM_CODE = {
    **obj(
        {
            "type": {"enum": ["HTTP", "Image"]},
            "http": obj({"url": string(pattern="^https?://"), "sha256": string(pattern=SHA256_HEX)}, ("url",)),
            # `registry/image:tag` or `registry/image@sha256:digest`: a reference, no scheme.
            "image": obj({
                "url": string(minLength=1, pattern=r"^(?![a-zA-Z][a-zA-Z0-9+.-]*://)\S+$"),
                "sha256": string(pattern=SHA256_HEX),
                "pullSecretRef": obj({"group": string(), "kind": {"const": "Secret"}, "name": string(minLength=1),
                                      "namespace": string()}, ("name",)),
            }, ("url",)),
            "pullPolicy": {"enum": ["IfNotPresent", "Always"]},
        },
        ("type",),
    ),
    # "If type is HTTP, http field needs to be set." / "If type is Image, image field needs to be set."
    "allOf": [
        {"if": {"properties": {"type": {"const": "HTTP"}}}, "then": {"required": ["http"], "not": {"required": ["image"]}}},
        {"if": {"properties": {"type": {"const": "Image"}}}, "then": {"required": ["image"], "not": {"required": ["http"]}}},
    ],
}

ENVOY_EXTENSION_POLICY = resource(
    "gateway.envoyproxy.io/v1alpha1",
    "EnvoyExtensionPolicy",
    obj({
        "targetRef": LOCAL_TARGET_REF,
        "targetRefs": {"type": "array", "minItems": 1, "items": LOCAL_TARGET_REF},
        "wasm": {"type": "array", "maxItems": 16, "items": obj({
            "name": string(minLength=1),
            "rootID": string(),
            "code": WASM_CODE,
            "config": {"type": "object"},
            "failOpen": {"type": "boolean"},
            "env": obj({"hostKeys": {"type": "array", "items": string(pattern=ENV_NAME)}}),
        }, ("code",))},
    }),
)

SCHEMAS = {
    ("v1", "Secret"): SECRET,
    ("apps/v1", "Deployment"): DEPLOYMENT,
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): WASM_PLUGIN,
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): ENVOY_PROXY,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): ENVOY_EXTENSION_POLICY,
}

# -- the checker --------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"^REPLACE-WITH-[A-Za-z0-9-]+$")
# 32+ bytes of key material as base64/base64url (43+ characters) or hex (64): what `devgate keygen` prints.
KEY_BLOB = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{43,}={0,2}")
SECRET_ENV = re.compile(r"^DEVGATE_")


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(document)"


def schema_problems(doc) -> list[str]:
    """What the API would refuse in one document: unknown kind, unknown or missing field, bad value."""
    from jsonschema import Draft202012Validator

    if not isinstance(doc, dict):
        return ["(document): not a mapping"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = SCHEMAS.get(key)
    if schema is None:
        return [f"(document): no schema for apiVersion {key[0]!r} kind {key[1]!r}"]
    validator = Draft202012Validator(schema)
    return sorted(f"{_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc))


def _walk(node, parts=()):
    yield parts, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*parts, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*parts, i))


def policy_problems(doc) -> list[str]:
    """The project's rules: pinned image, fail closed, inbound only, keys only by reference."""
    if not isinstance(doc, dict):
        return []
    out = []
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "Secret":
        if "data" in doc:
            out.append("data: a shipped Secret uses stringData with placeholders, never data")
        for k, v in (doc.get("stringData") or {}).items():
            if not (isinstance(v, str) and PLACEHOLDER.match(v)):
                out.append(f"stringData.{k}: not a placeholder (REPLACE-WITH-...): a secret value in plain text")
    if kind == "WasmPlugin":
        if not spec.get("sha256"):
            out.append("spec.sha256: missing: the image is not pinned (make pin-image)")
        if spec.get("failStrategy") not in ("FAIL_CLOSE", "FAIL_RELOAD"):
            out.append(f"spec.failStrategy: {spec.get('failStrategy')!r}: must be FAIL_CLOSE or FAIL_RELOAD "
                       "(never FAIL_OPEN: an authentication bypass)")
        modes = [m.get("mode") for m in spec.get("match") or [] if isinstance(m, dict)]
        if not modes or any(m != "SERVER" for m in modes):
            out.append(f"spec.match: modes {modes}: devgate authenticates requests to the workload: "
                       "match: [{mode: SERVER}]")
        if "selector" not in spec and "targetRefs" not in spec:
            out.append("spec: neither selector nor targetRefs: the plugin would apply to the whole namespace")
        if spec.get("phase") != "AUTHN":
            out.append(f"spec.phase: {spec.get('phase')!r}: devgate runs in AUTHN")
        for i, e in enumerate((spec.get("vmConfig") or {}).get("env") or []):
            if SECRET_ENV.match(str(e.get("name", ""))) and e.get("valueFrom") != "HOST":
                out.append(f"spec.vmConfig.env[{i}]: {e.get('name')} must come from the proxy (valueFrom: HOST), "
                           "never an inline value")
    if kind == "EnvoyExtensionPolicy":
        for i, w in enumerate(spec.get("wasm") or []):
            if w.get("failOpen") is not False:
                out.append(f"spec.wasm[{i}].failOpen: {w.get('failOpen')!r}: must be false, explicitly "
                           "(true skips devgate on failure: an authentication bypass)")
            code = w.get("code") or {}
            source = code.get(str(code.get("type", "")).lower()) or {}
            if not source.get("sha256"):
                out.append(f"spec.wasm[{i}].code: no sha256: the image is not pinned (make pin-image)")
    for parts, node in _walk(doc):
        where = _path(parts)
        if parts and parts[-1] == "proxyMetadata":
            out.append(f"{where}: proxyMetadata is rendered into the pod spec as a literal: no key there")
        if parts and parts[-1] == "annotations" and isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and "DEVGATE_" in v:
                    out.append(f"{where}.{k}: an annotation naming DEVGATE_*: keys never travel in annotations")
        if parts and parts[-1] == "env" and isinstance(node, list):
            for i, e in enumerate(node):
                if isinstance(e, dict) and SECRET_ENV.match(str(e.get("name", ""))) and "value" in e \
                        and e.get("valueFrom") != "HOST":
                    out.append(f"{where}[{i}]: {e.get('name')} has a literal value: use valueFrom.secretKeyRef")
        if parts and parts[-1] in ("pluginConfig", "config") and isinstance(node, dict):
            for sub, v in _walk(node):
                if sub and sub[-1] in ("secret", "password", "users"):
                    out.append(f"{where}{_path(('',) + sub)}: a credential inline in the plugin configuration")
    return out


def text_problems(text: str, name: str) -> list[str]:
    """Key-like material anywhere in the text (comments too) except the lines that pin a digest, and
    the two ways the old example taught to leak or misplace the key (proxyMetadata, a file mount)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\s*sha256:\s*[a-f0-9]{64}\s*(#.*)?$", line):
            continue
        # Commented-out YAML teaches as much as live YAML.
        if re.match(r"^\s*#?\s*proxyMetadata:", line):
            out.append(f"{name}:{n}: proxyMetadata: the injector renders it into the pod spec as a literal value")
        if "sidecar.istio.io/userVolume" in line:
            out.append(f"{name}:{n}: a Secret mounted as a file into the sidecar: the Wasm VM cannot read files")
        line = re.sub(r"@sha256:[a-f0-9]{64}", "", line)
        for m in KEY_BLOB.finditer(line):
            out.append(f"{name}:{n}: {len(m.group())} characters of key-like material (a secret in plain text?)")
    return out


def check(docs: list, text: str, name: str) -> list[str]:
    """Every problem in one manifest file: schema, policy, key-like blobs."""
    out = [f"{name}: document {i}: {p}" for i, d in enumerate(docs) for p in schema_problems(d) + policy_problems(d)]
    return out + text_problems(text, name)
