"""A flow's definition checked on save (CONTRACT.md "Automation flows"; issue 13 item 2) into a FlowDefinition with
its configs normalised, or InvalidInput naming the first offending path as the client spelled it
(`nodes[2].config.templateId`); shapes first, then the graph, then the merchant's rows it names (a query per model).
The engine and the triggers read valid definitions with `next_nodes`, `entry_node` and `keyword_match`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from automation.graph import graph_check
from automation.keywords import regex_problem
from campaigns.models import Campaign, Template
from campaigns.send_window import parse_send_window
from contacts.segments import compile_conditions
from contacts.validation import MAX_ATTRIBUTES, normalize_tag, normalize_tags, validate_attribute_changes
from mktx.accounts.models import Account
from mktx.api.errors import InvalidInput
from mktx.iam.models import User

TRIGGER_FIELDS: dict[str, tuple[str, ...]] = {  # beside `reentry`
    "new_follower": (),
    "message_received": ("keywords", "match"),
    "tag_added": ("tag",),
    "contact_created": (),
    "campaign_replied": ("campaignId",),
    "manual": (),
}
TRIGGER_TYPES = tuple(TRIGGER_FIELDS)
CONFIG_FIELDS: dict[str, tuple[str, ...]] = {  # a node config's fields, by node type
    "send_message": ("templateId", "content", "variables", "delay"),
    "wait": ("duration", "until", "window"),
    "condition": ("conditions",),
    "wait_for_reply": ("timeout", "keywords", "match"),
    "add_tag": ("tags",),
    "remove_tag": ("tags",),
    "update_attributes": ("attributes",),
    "assign_conversation": ("userId", "strategy"),
    "close_conversation": ("reason",),
    "split": ("weights",),
    "ai_reply": (),
    "end": (),
}
NODE_TYPES = tuple(CONFIG_FIELDS)
# the branches of the branching types (a split's are its weight keys); the others have none
BRANCHES: dict[str, frozenset[str]] = {
    "condition": frozenset({"true", "false"}),
    "wait_for_reply": frozenset({"replied", "timeout"}),
    "ai_reply": frozenset({"answered", "escalated"}),
}
MATCHES = ("exact", "contains", "startsWith", "regex")
REENTRY = ("never", "after_completion")
MAX_NODES = 100
MAX_SECONDS = 31_536_000  # 365 days
MAX_NAME = 200
MAX_DESCRIPTION = 2_000
MAX_NODE_ID = 100
MAX_CONTENT = 10_000
MAX_VARIABLES = 50
MAX_VARIABLE = 1_000
MAX_KEYWORDS = 50
MAX_KEYWORD = 200  # a regex's length too
MAX_SPLIT_KEYS = 20
MAX_SPLIT_KEY = 50
MAX_WEIGHT = 1_000_000
FIELDS = ("name", "description", "trigger", "nodes", "connections", "accountIds")


@dataclass(frozen=True)
class FlowDefinition:
    name: str
    description: str
    trigger_type: str
    trigger_config: dict[str, Any]  # normalised: "reentry" always present; message_received "match" present
    nodes: list[dict[str, Any]]  # [{"id", "type", "config", "name"?}], configs normalised (defaults filled)
    connections: list[dict[str, Any]]  # [{"fromNodeId", "toNodeId", "branch"?}] (branch only when set)
    account_ids: list[str] | None  # None: every account of the merchant

    @classmethod
    def of(cls, flow: Any) -> FlowDefinition:
        """The stored definition of a Flow (the `base` of a PUT)."""
        accounts = None if flow.account_ids is None else list(flow.account_ids)
        config, nodes, connections = dict(flow.trigger_config or {}), list(flow.nodes), list(flow.connections or [])
        return cls(flow.name, flow.description, flow.trigger_type, config, nodes, connections, accounts)


def branches_of(node: Mapping[str, Any]) -> set[str] | None:
    """The branch names a (valid) node's outgoing connections carry; None for a plain node (one, unnamed)."""
    if node["type"] == "split":
        return set(node["config"]["weights"])
    fixed = BRANCHES.get(node["type"])
    return None if fixed is None else set(fixed)


def flow_definition_clean(
    *, merchant_id: uuid.UUID, data: Mapping[str, Any], base: FlowDefinition | None = None
) -> FlowDefinition:
    """The definition `data` gives (a PUT: the keys it leaves out keep `base`'s values), checked and normalised.
    Other keys of `data` (an `id` or `status` a client echoes back) are not read."""
    if not isinstance(data, Mapping):
        raise InvalidInput("body", "must be an object")
    given: dict[str, Any] = {}
    if base is not None:
        trigger = {"type": base.trigger_type, "config": base.trigger_config}
        given = {"name": base.name, "description": base.description, "trigger": trigger, "nodes": base.nodes}
        given |= {"connections": base.connections, "accountIds": base.account_ids}
    given.update({key: data[key] for key in FIELDS if key in data})
    name = _text(given.get("name"), "name", limit=MAX_NAME, required=True).strip()
    description = given.get("description")
    description = "" if description is None else _text(description, "description", limit=MAX_DESCRIPTION)
    if "trigger" not in given:
        raise InvalidInput("trigger", "is required")
    refs = _Refs(merchant_id)
    trigger_type, trigger_config = _trigger(given["trigger"], refs)
    account_ids = _accounts(given.get("accountIds"), refs)
    if "nodes" not in given:
        raise InvalidInput("nodes", "is required")
    nodes = _nodes(given["nodes"], refs)
    raw_connections = given.get("connections")
    connections = _connections([] if raw_connections is None else raw_connections, nodes)
    graph_check(nodes, connections)
    refs.check()
    return FlowDefinition(name, description, trigger_type, trigger_config, nodes, connections, account_ids)


def _text(value: Any, path: str, *, limit: int, required: bool = False) -> str:
    if value is None and required:
        raise InvalidInput(path, "is required")
    if not isinstance(value, str):
        raise InvalidInput(path, "must be a string")
    if required and not value.strip():
        raise InvalidInput(path, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(path, f"has at most {limit:,} characters")
    return value  # a NUL is refused by the JSON parser already (mktx/api/parsers.py)


def _seconds(value: Any, path: str, low: int) -> int:
    if value is None:
        raise InvalidInput(path, "is required")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_SECONDS:
        raise InvalidInput(path, f"must be a whole number of seconds from {low} to {MAX_SECONDS:,} (365 days)")
    return int(value)


def _uuid(value: Any, path: str) -> str:
    try:
        if isinstance(value, str):
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise InvalidInput(path, "is required" if value is None else "must be an id (a UUID)")


def _object(value: Any, path: str) -> dict[str, Any]:
    """A config: absent or null is {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(path, "must be an object")
    return value


def _only(value: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in value:
        if key not in allowed:
            known = f"the fields are {', '.join(allowed)}" if allowed else "this config has no fields"
            raise InvalidInput(f"{path}.{key}", f"is not a field here ({known})")


def _one_of(config: dict[str, Any], first: str, second: str, path: str) -> str:
    """The one of two exclusive keys the config gives."""
    has_first, has_second = config.get(first) is not None, config.get(second) is not None
    if has_first and has_second:
        raise InvalidInput(f"{path}.{second}", f"give {first} or {second}, not both")
    if not (has_first or has_second):
        raise InvalidInput(f"{path}.{first}", f"is required (or {second})")
    return first if has_first else second


class _Refs:
    """The merchant's rows the definition names, looked up at the end in one query per model."""

    WHAT = {Template: "a template", User: "an active user", Account: "an account", Campaign: "a campaign"}

    def __init__(self, merchant_id: uuid.UUID) -> None:
        self.merchant_id = merchant_id
        self.wanted: dict[Any, list[tuple[str, str]]] = {}

    def add(self, model: Any, value: Any, path: str) -> str:
        pk = _uuid(value, path)
        self.wanted.setdefault(model, []).append((path, pk))
        return pk

    def check(self) -> None:
        for model, wanted in self.wanted.items():
            rows = model.objects.filter(merchant_id=self.merchant_id, pk__in={pk for _, pk in wanted})
            rows = rows.filter(is_active=True) if model is User else rows
            found = {str(pk) for pk in rows.values_list("pk", flat=True)}
            for path, pk in wanted:
                if pk not in found:
                    raise InvalidInput(path, f"is not {self.WHAT[model]} of this merchant")


def _keywords(config: dict[str, Any], path: str, out: dict[str, Any]) -> None:
    """`keywords`? and `match` (default contains) into `out`."""
    match = config.get("match")
    match = "contains" if match is None else match
    if not isinstance(match, str) or match not in MATCHES:
        raise InvalidInput(f"{path}.match", f"must be one of {', '.join(MATCHES)}")
    out["match"] = match
    raw = config.get("keywords")
    if raw is None:
        return
    if not isinstance(raw, list):
        raise InvalidInput(f"{path}.keywords", "must be a list of words")
    if len(raw) > MAX_KEYWORDS:
        raise InvalidInput(f"{path}.keywords", f"at most {MAX_KEYWORDS} keywords")
    words = []
    for index, item in enumerate(raw):
        where = f"{path}.keywords[{index}]"
        word = _text(item, where, limit=MAX_KEYWORD, required=True)
        if match == "regex":
            _check_regex(word, where)
        words.append(word if match == "regex" else word.strip())
    out["keywords"] = list(dict.fromkeys(words))


def _check_regex(pattern: str, path: str) -> None:
    problem = regex_problem(pattern)
    if problem is not None:
        raise InvalidInput(path, problem)


def _trigger(raw: Any, refs: _Refs) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise InvalidInput("trigger", "must be an object with type and config")
    _only(raw, ("type", "config"), "trigger")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in TRIGGER_TYPES:
        raise InvalidInput("trigger.type", f"must be one of {', '.join(TRIGGER_TYPES)}")
    path = "trigger.config"
    config = _object(raw.get("config"), path)
    _only(config, ("reentry", *TRIGGER_FIELDS[kind]), path)
    reentry = config.get("reentry")
    reentry = "never" if reentry is None else reentry
    if not isinstance(reentry, str) or reentry not in REENTRY:
        raise InvalidInput(f"{path}.reentry", f"must be one of {', '.join(REENTRY)}")
    out: dict[str, Any] = {"reentry": reentry}
    if kind == "message_received":
        _keywords(config, path, out)
    elif kind == "tag_added":
        if config.get("tag") is None:
            raise InvalidInput(f"{path}.tag", "is required")
        out["tag"] = normalize_tag(config["tag"], f"{path}.tag")
    elif kind == "campaign_replied" and config.get("campaignId") is not None:
        out["campaignId"] = refs.add(Campaign, config["campaignId"], f"{path}.campaignId")
    return kind, out


def _accounts(raw: Any, refs: _Refs) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("accountIds", "must be a non-empty list of account ids (null or absent: every account)")
    if len(raw) > MAX_NODES:
        raise InvalidInput("accountIds", f"at most {MAX_NODES} accounts")
    return list(dict.fromkeys(refs.add(Account, item, f"accountIds[{index}]") for index, item in enumerate(raw)))


def _node_config(kind: str, config: dict[str, Any], path: str, refs: _Refs) -> dict[str, Any]:
    """A node's config checked and normalised; `path` is `nodes[i].config`."""
    _only(config, CONFIG_FIELDS[kind], path)
    out: dict[str, Any] = {}
    if kind == "send_message":
        _send_message(config, path, refs, out)
    elif kind == "wait":
        _wait(config, path, out)
    elif kind == "condition":
        if config.get("conditions") is None:
            raise InvalidInput(f"{path}.conditions", "is required")
        try:
            compile_conditions(merchant_id=refs.merchant_id, conditions=config["conditions"])
        except InvalidInput as error:  # its path starts at `conditions`
            raise InvalidInput(f"{path}.{error.details['field']}", error.details["reason"]) from error
        out["conditions"] = config["conditions"]
    elif kind == "wait_for_reply":
        out["timeout"] = _seconds(config.get("timeout"), f"{path}.timeout", 1)
        _keywords(config, path, out)
    elif kind in ("add_tag", "remove_tag"):
        out["tags"] = normalize_tags(config.get("tags"), f"{path}.tags")
    elif kind == "update_attributes":
        if config.get("attributes") is None:
            raise InvalidInput(f"{path}.attributes", "is required")
        out["attributes"] = validate_attribute_changes(config["attributes"], f"{path}.attributes")
        if len(out["attributes"]) > MAX_ATTRIBUTES:
            raise InvalidInput(f"{path}.attributes", f"a contact has at most {MAX_ATTRIBUTES} attributes")
    elif kind == "assign_conversation" and _one_of(config, "userId", "strategy", path) == "strategy":
        if config["strategy"] != "round_robin":
            raise InvalidInput(f"{path}.strategy", "must be round_robin")
        out["strategy"] = "round_robin"
    elif kind == "assign_conversation":
        out["userId"] = refs.add(User, config["userId"], f"{path}.userId")
    elif kind == "close_conversation" and config.get("reason") is not None:
        out["reason"] = _text(config["reason"], f"{path}.reason", limit=MAX_NAME)
    elif kind == "split":
        out["weights"] = _weights(config.get("weights"), f"{path}.weights")
    return out


def _send_message(config: dict[str, Any], path: str, refs: _Refs, out: dict[str, Any]) -> None:
    if _one_of(config, "templateId", "content", path) == "templateId":
        out["templateId"] = refs.add(Template, config["templateId"], f"{path}.templateId")
    else:
        out["content"] = _text(config["content"], f"{path}.content", limit=MAX_CONTENT, required=True)
    variables = config.get("variables")
    if variables is not None:
        if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
            raise InvalidInput(f"{path}.variables", f"must be an object of at most {MAX_VARIABLES} values")
        for key, value in variables.items():
            where = f"{path}.variables.{key}"
            _text(key, where, limit=64, required=True)
            if isinstance(value, str):
                _text(value, where, limit=MAX_VARIABLE)
            elif value is not None and not isinstance(value, (bool, int, float)):
                raise InvalidInput(where, "must be a string, number or boolean")
            elif isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput(where, "numbers must be finite")
        out["variables"] = dict(variables)
    delay = config.get("delay")
    out["delay"] = 0 if delay is None else _seconds(delay, f"{path}.delay", 0)


def _wait(config: dict[str, Any], path: str, out: dict[str, Any]) -> None:
    if _one_of(config, "duration", "until", path) == "duration":
        out["duration"] = _seconds(config["duration"], f"{path}.duration", 1)
    else:
        until = _text(config["until"], f"{path}.until", limit=64, required=True)
        try:
            moment = datetime.fromisoformat(until.strip())
        except ValueError as error:
            raise InvalidInput(f"{path}.until", "must be an ISO 8601 date and time") from error
        moment = moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)  # naive: UTC
        try:
            moment = moment.astimezone(UTC)
        except (OverflowError, ValueError) as error:
            raise InvalidInput(f"{path}.until", "is out of range") from error
        out["until"] = moment.isoformat()
    window = parse_send_window(config.get("window"), f"{path}.window")
    if window is not None:
        out["window"] = {key: value for key, value in window.as_json().items() if value is not None}


def _weights(weights: Any, path: str) -> dict[str, Any]:
    if not isinstance(weights, dict) or not 2 <= len(weights) <= MAX_SPLIT_KEYS:
        raise InvalidInput(path, f"must be an object of 2 to {MAX_SPLIT_KEYS} branch: weight")
    for key, weight in weights.items():
        _text(key, f"{path}.{key}", limit=MAX_SPLIT_KEY, required=True)
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not number or not math.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
            raise InvalidInput(f"{path}.{key}", f"a weight is a number above 0 and at most {MAX_WEIGHT:,}")
    return dict(weights)


def _nodes(raw: Any, refs: _Refs) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("nodes", "must be a non-empty list of nodes")
    if len(raw) > MAX_NODES:
        raise InvalidInput("nodes", f"a flow has at most {MAX_NODES} nodes ({len(raw)} given)")
    seen: dict[str, int] = {}
    nodes = []
    for index, item in enumerate(raw):
        path = f"nodes[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(path, "a node is an object with id, type and config")
        _only(item, ("id", "type", "config", "name"), path)
        node_id = _text(item.get("id"), f"{path}.id", limit=MAX_NODE_ID, required=True)
        if node_id in seen:
            raise InvalidInput(f"{path}.id", f"nodes[{seen[node_id]}] has this id already")
        seen[node_id] = index
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in NODE_TYPES:
            raise InvalidInput(f"{path}.type", f"must be one of {', '.join(NODE_TYPES)}")
        config = _node_config(kind, _object(item.get("config"), f"{path}.config"), f"{path}.config", refs)
        node: dict[str, Any] = {"id": node_id, "type": kind, "config": config}
        if item.get("name") is not None:
            node["name"] = _text(item["name"], f"{path}.name", limit=MAX_NAME)
        nodes.append(node)
    return nodes


def _connections(raw: Any, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise InvalidInput("connections", "must be a list of connections")
    by_id = {node["id"]: node for node in nodes}
    seen: dict[tuple[str, str, str | None], int] = {}
    taken: dict[tuple[str, str | None], int] = {}  # (fromNodeId, branch): the connection that leaves by it
    connections = []
    for index, item in enumerate(raw):
        path = f"connections[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(path, "a connection is an object with fromNodeId, toNodeId and branch?")
        _only(item, ("fromNodeId", "toNodeId", "branch"), path)
        for key in ("fromNodeId", "toNodeId"):
            value = item.get(key)
            if not isinstance(value, str) or value not in by_id:
                raise InvalidInput(f"{path}.{key}", "is required" if value is None else "is not the id of a node")
        source, target, branch = item["fromNodeId"], item["toNodeId"], item.get("branch")
        kind = by_id[source]["type"]
        if kind == "end":
            raise InvalidInput(f"{path}.fromNodeId", "an end node has no outgoing connection")
        allowed = branches_of(by_id[source])
        if allowed is None and branch is not None:
            raise InvalidInput(f"{path}.branch", f"a {kind} node has no branches")
        if allowed is not None and (not isinstance(branch, str) or branch not in allowed):
            listed = ", ".join(sorted(allowed))
            raise InvalidInput(
                f"{path}.branch", f"{'is required: ' if branch is None else ''}a {kind} node's branches are {listed}"
            )
        if (source, target, branch) in seen:
            raise InvalidInput(path, f"connections[{seen[source, target, branch]}] is the same connection")
        if (source, branch) in taken:
            leaves = f"its {branch!r} branch" if branch is not None else "its one outgoing connection"
            where = f"{path}.branch" if branch is not None else f"{path}.fromNodeId"
            raise InvalidInput(where, f"{source!r} already leaves by {leaves} (connections[{taken[source, branch]}])")
        seen[source, target, branch] = taken[source, branch] = index
        connection = {"fromNodeId": source, "toNodeId": target}
        if branch is not None:
            connection["branch"] = branch
        connections.append(connection)
    for index, node in enumerate(nodes):
        if node["type"] in ("condition", "split"):  # a wait_for_reply's or ai_reply's branch may end the execution
            missing = sorted(b for b in branches_of(node) or () if (node["id"], b) not in taken)
            if missing:
                raise InvalidInput(f"nodes[{index}]", f"{node['id']!r} has no connection for branch {missing[0]!r}")
    return connections
