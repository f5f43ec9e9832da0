"""Structured output: the answer as JSON for ``response_format`` ``json_object`` / ``json_schema``.

The content is always llmrec's own object (:func:`answer_object`), never generated JSON. With
``json_schema`` it is reduced to the properties the client's schema names (so a strict schema's
``additionalProperties: false`` holds), after checking once, statically, that every property the
schema requires is one llmrec produces (else a 400 naming it). Local ``$ref`` (``#/$defs/...``)
and ``anyOf``/``oneOf`` branches (e.g. ``Optional``) are followed. Scalar types are not checked:
the shapes are documented in :func:`answer_object`.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from llmrec.agent.session import Reply
from llmrec.serve.protocol import APIError

PARAM = "response_format.json_schema.schema"
_ITEM = {"item_id": "", "title": "", "score": 0.0, "rank": 1, "explanation": "", "because": [""],
         "retrieval_score": 0.0}
SHAPE = {"text": "", "items": [_ITEM], "question": "", "action": ""}
"""An example of :func:`answer_object`'s shape (one item), used to check a client's schema."""


def item_dict(r) -> dict:
    """A :class:`~llmrec.recommender.Recommendation` as plain JSON data (a non-finite score: None)."""
    d = asdict(r)
    for key in ("score", "retrieval_score"):
        if d[key] is not None and not math.isfinite(d[key]):
            d[key] = None
    return d


def answer_object(reply: Reply) -> dict:
    """``{"text": str (the readable answer), "items": [{"item_id": str, "title": str, "score": float |
    None (the LLM's label log-probability; popularity count or query cosine for a cold start),
    "rank": int (1-based), "explanation": str, "because": [item ids cited], "retrieval_score": float
    | None}], "question": str | None (set when the assistant asks back), "action": str (recommend,
    more, why, ask, ack, help, error)}``."""
    return {"text": reply.text, "items": [item_dict(r) for r in reply.items], "question": reply.question,
            "action": reply.meta.get("action")}


def _resolve(schema, root: dict, where: str):
    for _ in range(32):
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise APIError(400, f"only local $ref ('#/...') are supported in the schema, got {ref!r} at {where}",
                           param=PARAM)
        node = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise APIError(400, f"the schema's $ref {ref!r} at {where} points nowhere", param=PARAM)
            node = node[part]
        schema = node
    raise APIError(400, f"the schema's $ref chain at {where} is too deep or circular", param=PARAM)


def _kind(value) -> str:
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "scalar"


def _branch(schema, value, root: dict, where: str):
    """The schema (``$ref`` followed) or its first ``anyOf``/``oneOf`` branch fitting the value's kind."""
    schema = _resolve(schema, root, where)
    if not isinstance(schema, dict):
        return schema
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and _kind(value) != "scalar":
        for b in branches:
            b = _resolve(b, root, where)
            if isinstance(b, dict) and _kind(value) in _types(b, value):
                return b
    return schema


def _types(schema: dict, value) -> set[str]:
    t = schema.get("type")
    if t is None:
        return {"object"} if "properties" in schema else {"array"} if "items" in schema else {_kind(value)}
    return {t} if isinstance(t, str) else set(t) if isinstance(t, list) else set()


def check_schema(schema: dict) -> None:
    """Raise :class:`APIError` (400, ``param`` :data:`PARAM`) when the schema requires a property
    llmrec does not produce, or wants another kind (object/array) where llmrec gives one."""
    if not isinstance(schema, dict):
        raise APIError(400, "the JSON schema must be an object", param=PARAM)
    _check(schema, SHAPE, "$", schema)


def _check(schema, shape, where: str, root: dict) -> None:
    s = _branch(schema, shape, root, where)
    if not isinstance(s, dict) or _kind(shape) == "scalar":
        return
    if _kind(shape) not in _types(s, shape):
        raise APIError(400, f"at {where} llmrec gives an {_kind(shape)}, the schema asks for {s.get('type')!r}",
                       param=PARAM)
    if isinstance(shape, dict):
        props = s.get("properties") or {}
        missing = [r for r in s.get("required") or [] if r not in shape]
        if missing:
            raise APIError(400, f"the schema requires {', '.join(map(repr, missing))} at {where}, which llmrec does "
                           f"not produce; it gives: {', '.join(shape)}", param=PARAM)
        for key, sub in props.items() if isinstance(props, dict) else ():
            if key in shape:
                _check(sub, shape[key], f"{where}.{key}", root)
    elif isinstance(s.get("items"), dict):
        _check(s["items"], shape[0], f"{where}[]", root)


def project(value, schema, root: dict | None = None):
    """``value`` reduced to the properties ``schema`` names (recursively; an object schema without
    ``properties`` keeps everything). Call :func:`check_schema` first."""
    root = schema if root is None else root
    s = _branch(schema, value, root, "$")
    if not isinstance(s, dict):
        return value
    if isinstance(value, dict):
        props = s.get("properties")
        if not isinstance(props, dict):
            return value
        return {k: project(value[k], sub, root) for k, sub in props.items() if k in value}
    if isinstance(value, list) and isinstance(s.get("items"), dict):
        return [project(v, s["items"], root) for v in value]
    return value
