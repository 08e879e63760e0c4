"""The OpenAPI 3 document of the HTTP API, served at GET /v1/openapi.json and checked by schemathesis."""

from __future__ import annotations

from typing import Any

from edge import __version__

NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _err(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], *codes: int, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, public: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    texts = {400: "Bad parameter (the error names it)", 401: "Missing or invalid token",
             403: "Not allowed (a pull-scope token, or a point that is not writable)", 404: "Not found",
             409: "Conflict with current state",
             413: "Body too large", 422: "The config is invalid (problems listed)",
             500: "The reload failed part-way (restart_needed says what is left over)",
             502: "Delivery through the sink failed"}
    for code in ((*codes, 401) if not public else codes):
        responses[str(code)] = _err(texts[code])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if public:
        op["security"] = []
    return op


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def document() -> dict[str, Any]:
    obj = {"type": "object"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "edge appliance API", "version": __version__,
                 "description": "Pull API for central systems and admin API for the TUI and scripts. "
                                "Every endpoint but /v1/health and /v1/openapi.json needs "
                                "'Authorization: Bearer <token>'."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}}},
                "Reading": {
                    "type": "object", "required": ["seq", "device", "point", "ts", "value", "quality"],
                    "properties": {
                        "seq": SEQ, "device": {"type": "string"}, "point": {"type": "string"},
                        "ts": {"type": "string", "format": "date-time"},
                        "value": {"nullable": True},
                        "unit": {"type": "string"},
                        "quality": {"type": "string", "enum": ["good", "uncertain", "bad"]},
                        "error": {"type": "string"},
                    },
                },
                "Page": {
                    "type": "object", "required": ["edge", "readings", "next"],
                    "properties": {"edge": {"type": "string"},
                                   "readings": {"type": "array", "items": {"$ref": "#/components/schemas/Reading"}},
                                   "next": SEQ, "sig": obj},
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {"get": _op("Liveness and identity", _ok({
                "type": "object", "required": ["status", "edge", "version"],
                "properties": {"status": {"type": "string", "enum": ["ok"]}, "edge": {"type": "string"},
                               "version": {"type": "string"}}}), public=True)},
            "/v1/openapi.json": {"get": _op("This document", _ok(obj), public=True)},
            "/v1/readings": {"get": _op(
                "Durable readings with seq > after, in seq order",
                _ok({"$ref": "#/components/schemas/Page"}), 400,
                params=[_query("after", SEQ, "return readings with seq greater than this (default 0)"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000},
                               "at most this many (default 500, max api.max_limit)")])},
            "/v1/cursors": {"get": _op("Every sink and consumer cursor", _ok({
                "type": "object", "required": ["cursors"],
                "properties": {"cursors": {"type": "array", "items": {
                    "type": "object", "required": ["name", "kind", "seq", "backlog"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "seq": SEQ,
                                   "backlog": {"type": "integer"}}}}}}))},
            "/v1/cursors/{consumer}": {
                "parameters": [_path_param("consumer", NAME)],
                "put": _op("Record that a consumer has every reading <= seq (registers it)", _ok({
                    "type": "object", "required": ["consumer", "seq"],
                    "properties": {"consumer": {"type": "string"}, "seq": SEQ}}), 400, 403, 409, 413,
                    body={"type": "object", "required": ["seq"], "properties": {"seq": SEQ}}),
                "delete": _op("Unregister a consumer (its cursor no longer holds readings)", _ok({
                    "type": "object", "required": ["consumer", "removed"],
                    "properties": {"consumer": {"type": "string"}, "removed": {"type": "boolean"}}}), 400, 403, 404),
            },
            "/v1/devices": {"get": _op("Devices, status, last poll, error counts, latest values", _ok({
                "type": "object", "required": ["devices"],
                "properties": {"devices": {"type": "array", "items": obj}}}))},
            "/v1/devices/{device}/points/{point}": {
                "parameters": [_path_param("device", NAME), _path_param("point", NAME)],
                "post": _op("Write a writable point; the value read back is returned", _ok({
                    "type": "object", "required": ["device", "point", "written", "read_back"],
                    "properties": {"device": {"type": "string"}, "point": {"type": "string"},
                                   "written": {}, "read_back": {"nullable": True}}}), 400, 403, 404, 409, 413,
                    body={"type": "object", "required": ["value"],
                          "properties": {"value": {"oneOf": [{"type": "number"}, {"type": "boolean"},
                                                             {"type": "string"}]}}}),
            },
            "/v1/devices/{device}/read": {
                "parameters": [_path_param("device", NAME)],
                "post": _op("Read a device now, nothing stored: its points, or one ad-hoc point (body.point)", _ok({
                    "type": "object", "required": ["device", "readings"],
                    "properties": {"device": {"type": "string"},
                                   "readings": {"type": "array", "items": {"$ref": "#/components/schemas/Reading"}}}}),
                    400, 403, 404, 409, 413,
                    body={"type": "object", "properties": {"point": obj}}),
            },
            "/v1/stats": {"get": _op("Store size, backlog per sink and consumer, rates, dead letters",
                                     _ok({"type": "object", "required": ["edge", "store", "sinks", "consumers",
                                                                         "dead_letters", "devices"]}))},
            "/v1/events": {"get": _op("The event log (retention drops, reconnects, config changes, writes)", _ok({
                "type": "object", "required": ["events"],
                "properties": {"events": {"type": "array", "items": obj}}}), 400,
                params=[_query("after", SEQ, "events with id greater than this"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many"),
                        _query("kind", {"type": "string"}, "only events of this kind")])},
            "/v1/dead-letters": {"get": _op("Dead-lettered batches, oldest first, without their payloads", _ok({
                "type": "object", "required": ["dead_letters", "next"],
                "properties": {"dead_letters": {"type": "array", "items": obj}, "next": SEQ}}), 400,
                params=[_query("sink", {"type": "string"}, "only this sink's"),
                        _query("after", SEQ, "dead letters with id greater than this"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000},
                               "at most this many (default 1000)")])},
            "/v1/dead-letters/{id}": {
                "parameters": [_path_param("id", SEQ)],
                "delete": _op("Discard a dead letter", _ok(obj), 400, 403, 404)},
            "/v1/dead-letters/{id}/replay": {
                "parameters": [_path_param("id", SEQ)],
                "post": _op("Deliver a dead letter again through its sink", _ok(obj), 400, 403, 404, 409, 502)},
            "/v1/reload": {"post": _op("Re-read the config file and apply it", _ok(obj), 403, 409, 422, 500)},
            "/v1/config": {"get": _op("The config file's text", _ok({
                "type": "object", "required": ["path", "text"],
                "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}), 403, 409),
                "put": _op("Replace the config file (validated; previous kept as .bak) and reload", _ok(obj),
                           400, 403, 409, 413, 422, 500,
                           body={"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}})},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               "401": _err("Missing or invalid token")}}},
        },
    }
