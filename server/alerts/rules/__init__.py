"""The alert rules, one module each.

Every `Rule` subclass defined in a module of this package is a rule: adding a rule is adding a
module here. Its config section (`alerts.rules.<name>`, and per gate and lane) and the engine's
calls follow from the class; nothing else is edited.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable

from server.alerts.base import Rule, RuleConfig
from wire.topics import ID_PATTERN


def discover(package: str, path: Iterable[str]) -> tuple[type[Rule], ...]:
    """Import every module of a package and return the rules they define, in their `order`."""
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(path):
        module = importlib.import_module(f"{package}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and obj.__module__ == module.__name__:
                _check(obj, found)
                found[obj.name] = obj
    return tuple(sorted(found.values(), key=lambda r: (r.order, r.name)))


def _check(rule: type[Rule], found: dict[str, type[Rule]]) -> None:
    """A rule that could not be configured or told apart fails at import, not on the first message."""
    for attr in ("name", "title", "description", "config_model", "order"):
        if not hasattr(rule, attr):
            raise TypeError(f"alert rule {rule.__module__}.{rule.__qualname__} does not set `{attr}`")
    if not re.match(ID_PATTERN, rule.name):
        raise TypeError(f"alert rule name {rule.name!r} must match {ID_PATTERN}")
    if rule.name in found:
        raise TypeError(f"two alert rules are named {rule.name!r}: {found[rule.name].__module__} and {rule.__module__}")
    if not (isinstance(rule.config_model, type) and issubclass(rule.config_model, RuleConfig)):
        raise TypeError(f"alert rule {rule.name!r}: config_model must subclass RuleConfig")


#: every rule of this package, in evaluation order
RULES = discover(__name__, __path__)
