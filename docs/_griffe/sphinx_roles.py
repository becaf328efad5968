"""A griffe extension for the reference pages: the docstrings' Sphinx roles as links.

The library's docstrings use Sphinx's roles (:class:`~orb_learning.config.Settings`,
:func:`retry`, :mod:`orb_learning.redaction`) and its ``::`` before a literal block, which
Markdown shows as they are. This turns each role into a cross-reference that mkdocs-autorefs
resolves when the target is on a reference page, and into plain code otherwise (``optional``:
no warning, so ``mkdocs build --strict`` stays green for targets that are private modules),
and a paragraph's trailing ``::`` into ``:``. The docstrings themselves are not changed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(?P<target>[^`]+)`")
LITERAL = re.compile(r"::$", re.M)


def _identifier(target: str, obj: griffe.Object) -> str:
    if target.startswith("."):
        return obj.module.path + target
    head, _, rest = target.partition(".")
    member, scope = None, obj if not target.startswith("orb_learning") else None
    while scope is not None and member is None:  # the object, its class, its module...
        member = scope.members.get(head)
        scope = scope.parent
    if member is None:
        return target
    base = member.target_path if member.is_alias else member.path  # an import: its origin
    return f"{base}.{rest}" if rest else base


def _replace(obj: griffe.Object) -> Any:
    def replace(match: re.Match[str]) -> str:
        text = match.group("target").strip()
        title = None
        if "<" in text and text.endswith(">"):  # :class:`title <target>`
            title, text = text[:-1].split("<", 1)
            title = " ".join(title.split())
        target = re.sub(r"\s+", "", text)  # a role can wrap across lines
        title_only = target.startswith("~")
        target = target.lstrip("~")
        if not title:
            title = target.rsplit(".", 1)[-1] if title_only else target
        identifier = html.escape(_identifier(target, obj), quote=True)
        code = f"<code>{html.escape(title)}</code>"
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    return replace


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring once the package is loaded (names resolve against its
    modules' members then)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                text = ROLE.sub(_replace(obj), obj.docstring.value)
                obj.docstring.value = LITERAL.sub(":", text)
