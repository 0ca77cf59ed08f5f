"""platform.yaml: what the portal tells the engine (read-only here, never exposed over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Platform:
    instance_id: str = "local"
    owner: str = ""
    max_trading_pairs: int | None = None
    proxy_secret: str | None = None
    paper_only: bool = False  # the no-card trial trades on the paper exchange only
    console_url: str = ""  # the instance's page in the portal's console (the engine pages link back)
    # The plan includes the adaptive strategy. Absent from the file means no: a platform file from a
    # portal that predates the flag cannot vouch for the plan, and failing closed costs the customer
    # nothing worse than the fixed grid (with a notice) until the portal next writes the file.
    adaptive_strategy: bool = False

    def __repr__(self) -> str:
        return f"Platform(instance_id={self.instance_id!r}, max_trading_pairs={self.max_trading_pairs!r})"


def load_platform(path: Path) -> Platform | None:
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    pairs = data.get("max_trading_pairs")
    return Platform(
        instance_id=str(data.get("instance_id") or "local"),
        owner=str(data.get("owner") or ""),
        max_trading_pairs=int(pairs) if pairs is not None else None,
        proxy_secret=str(data["proxy_secret"]) if data.get("proxy_secret") else None,
        paper_only=bool(data.get("paper_only", False)),
        console_url=str(data.get("console_url") or ""),
        adaptive_strategy=bool(data.get("adaptive_strategy", False)),
    )


def load_run_keys(path: Path | None) -> dict[str, str]:
    """The keys the portal hands over outside the volume (tmpfs or Docker secret): `proxy_secret`
    and `secrets_key`. Empty without a keys file (local development)."""
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {name: str(data[name]) for name in ("proxy_secret", "secrets_key") if data.get(name)}
