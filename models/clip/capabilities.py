"""The one gate for CLIP requests: may this request run on this bundle?

A prompt method declares the tasks its artifacts serve and the graphs its requests need
(`PromptMethod.tasks`, `.graphs`); free-text requests need their task's graph. The gateway asks
here once, before any work, and the answer names what to export or where to send the prompt
instead. The encoder and the runtime then take the request as given.
"""

from __future__ import annotations

from collections.abc import Iterable

from promptserve.models.clip.methods import METHODS, get_method

TASKS = ("classify", "anomaly", "segment")
# How to export a bundle that has each optional graph.
_EXPORT = {
    "vision_prompted": "re-export the backbone without --no-deep-prompts",
    "text_prompted": "re-export the backbone without --no-deep-prompts",
    "anomaly": "export it with --anomaly-size",
    "winclip": "export it with --winclip-scales",
}


class CapabilityError(ValueError):
    """A request this bundle or this prompt cannot serve; `param` names the field to change."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def export_hint(graph: str) -> str:
    """How to get a bundle with `graph`."""
    if graph.startswith("segment_"):
        return f"export it with --segment {graph.removeprefix('segment_')}"
    return _EXPORT.get(graph, "re-export the backbone")


def require_graph(graphs: Iterable[str], graph: str, *, what: str, param: str) -> None:
    """Refuse `what` unless the bundle has `graph`."""
    if graph not in set(graphs):
        raise CapabilityError(
            f"this server's bundle has no {graph} graph, which {what} needs; {export_hint(graph)}",
            param=param,
        )


def check_prompt(task: str, method_name: str, graphs: Iterable[str], *, prompt_id: str) -> None:
    """Refuse a registered prompt on a route its method does not serve, or on a bundle
    without the graphs its method needs."""
    method = get_method(method_name)
    if task not in method.tasks:
        serving = [m for m, cls in sorted(METHODS.items()) if task in cls.tasks]
        raise CapabilityError(
            f"prompt {prompt_id!r} is a {method_name} prompt, which serves "
            f"{' and '.join(f'/v1/{t}' for t in sorted(method.tasks))}, not /v1/{task}; send it "
            f"there, or register a prompt for /v1/{task} (methods: {', '.join(serving)})",
            param="prompt_id",
        )
    available = set(graphs)
    for graph in method.graphs:
        require_graph(available, graph, what=f"a {method_name} prompt", param="prompt_id")


def served_tasks(graphs: Iterable[str]) -> list[str]:
    """The tasks a bundle with these graphs can serve in some way."""
    available = set(graphs)
    return [
        "classify",
        *(["anomaly"] if {"anomaly", "winclip"} & available else []),
        *(["segment"] if any(g.startswith("segment_") for g in available) else []),
    ]
