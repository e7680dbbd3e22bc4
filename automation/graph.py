"""A flow's nodes and connections as a graph: what follows each node by branch, the entry, and the checks of its
shape on save (every node reached, no loop that could run without pausing)."""

from __future__ import annotations

from typing import Any

from mktx.api.errors import InvalidInput


def next_nodes(
    definition_nodes: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> dict[str, dict[str | None, str]]:
    """{fromNodeId: {branch (None for a plain node): toNodeId}}, every node present (no key: it ends there)."""
    following: dict[str, dict[str | None, str]] = {node["id"]: {} for node in definition_nodes}
    for connection in connections:
        following[connection["fromNodeId"]][connection.get("branch")] = connection["toNodeId"]
    return following


def entry_node(nodes: list[dict[str, Any]], connections: list[dict[str, Any]]) -> str:
    """The id of the one node no connection leads to (InvalidInput `nodes` when there is not exactly one)."""
    targets = {connection["toNodeId"] for connection in connections}
    entries = [node["id"] for node in nodes if node["id"] not in targets]
    if not entries:
        raise InvalidInput("nodes", "there is no entry node: every node has an incoming connection")
    if len(entries) > 1:
        listed = ", ".join(repr(entry) for entry in entries[:10])
        raise InvalidInput("nodes", f"only the entry may have no incoming connection; these have none: {listed}")
    return entries[0]


def graph_check(nodes: list[dict[str, Any]], connections: list[dict[str, Any]]) -> None:
    """Exactly one entry, every node reached from it, and no loop without a pause (InvalidInput naming the node
    or the loop)."""
    entry = entry_node(nodes, connections)
    following = next_nodes(nodes, connections)
    reached, todo = {entry}, [entry]
    while todo:
        for target in following[todo.pop()].values():
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for index, node in enumerate(nodes):
        if node["id"] not in reached:
            raise InvalidInput(f"nodes[{index}]", f"node {node['id']!r} cannot be reached from the entry {entry!r}")
    cycle = _cycle_without_pause(nodes, following)
    if cycle:
        raise InvalidInput("connections", f"the loop {' -> '.join(cycle)} has no wait or wait_for_reply to pause at")


def _cycle_without_pause(nodes: list[dict[str, Any]], following: dict[str, dict[str | None, str]]) -> list[str]:
    """Node ids of a cycle among the nodes that do not pause ([] when none): depth first, at most MAX_NODES deep."""
    # a wait `until` a moment long past does not pause; a wait for a duration and a wait_for_reply always do
    pausing = {
        n["id"] for n in nodes if n["type"] == "wait_for_reply" or (n["type"] == "wait" and "duration" in n["config"])
    }
    graph = {
        n["id"]: [t for t in following[n["id"]].values() if t not in pausing] for n in nodes if n["id"] not in pausing
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node_id: str, trail: list[str]) -> list[str]:
        state[node_id] = 1
        trail.append(node_id)
        for target in graph[node_id]:
            if state.get(target) == 1:
                return [*trail[trail.index(target) :], target]
            if target not in state and (found := visit(target, trail)):
                return found
        state[node_id] = 2
        trail.pop()
        return []

    for node_id in graph:
        if node_id not in state and (found := visit(node_id, [])):
            return found
    return []
