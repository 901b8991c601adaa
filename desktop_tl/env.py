"""Reading the app's environment variables: one meaning of yes/no and of name lists.

``DTL_STRICT_PLUGINS=1``, ``DTL_ALLOW_DOWNLOAD=yes`` and the like all go through
:func:`env_flag`; ``DTL_DISABLED_PLUGINS=a,b`` and other lists through :func:`env_names`.
Qt-free and torch-free, so the engine, the plugin manager and the window share it.
"""

from __future__ import annotations

import os
import warnings

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_flag(name: str, default: bool = False) -> bool:
    """The yes/no variable ``name``; ``default`` when unset or empty. A value that is
    neither is reported (with what to write instead) and the default is used."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    warnings.warn(
        f"{name}={os.environ[name]!r} is not a yes/no value; write one of "
        f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}. Using the default "
        f"({'on' if default else 'off'}).",
        stacklevel=2,
    )
    return default


def env_names(name: str) -> list[str]:
    """The comma-separated list in ``name``, each entry stripped, empty ones left out."""
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
