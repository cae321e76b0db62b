"""``copilot keys``: API keys and webhook tokens. The key is printed once; only its hash is
stored."""

from __future__ import annotations

from typing import Annotated

import typer

from copilot.cli import _settings, app, out

keys_app = typer.Typer(help="API keys (roles) and webhook tokens.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _session():  # type: ignore[no-untyped-def]
    from copilot.store import IncidentStore

    return IncidentStore.open(_settings()).session()


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="responder, commander, comms or admin.")],
    name: Annotated[str, typer.Option(help="Whose key it is (shown in the audit log).")],
) -> None:
    """Make an API key and print it (once)."""
    from copilot import audit
    from copilot.auth import create_key, key_view

    with _session() as s:
        row, plain = create_key(s, name=name, role=role)
        audit.record(s, actor="cli", role="admin", action="key.create", target=f"key:{row.id}",
                     after=key_view(row))
    out.print(f"key {row.id} for {name} ({role}): {plain}", highlight=False)
    out.print("[dim]store it now: only its hash is kept[/]")


@keys_app.command("webhook")
def keys_webhook(
    source: Annotated[str, typer.Option(help="alertmanager, grafana, pagerduty or generic.")],
    name: Annotated[str | None, typer.Option(help="A label for the token.")] = None,
) -> None:
    """Make a token for one webhook source and print it (once)."""
    from copilot import audit
    from copilot.auth import WEBHOOK_ROLE, create_key, key_view

    with _session() as s:
        row, plain = create_key(s, name=name or f"webhook-{source}", role=WEBHOOK_ROLE,
                                source=source)
        audit.record(s, actor="cli", role="admin", action="key.create", target=f"key:{row.id}",
                     after=key_view(row))
    out.print(f"token {row.id} for /v1/webhooks/alerts/{source}: {plain}", highlight=False)


@keys_app.command("list")
def keys_list(
    revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False,
) -> None:
    from copilot.auth import list_keys

    with _session() as s:
        for k in list_keys(s, include_revoked=revoked):
            state = "revoked" if k.revoked_at else "active"
            out.print(f"{k.id:>4}  {k.prefix}…  {k.role:<10} {k.source or '':<12} {k.name}  "
                      f"{state}", highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (keys list).")]) -> None:
    from copilot import audit
    from copilot.auth import key_view, revoke

    with _session() as s:
        row = revoke(s, key_id)
        audit.record(s, actor="cli", role="admin", action="key.revoke", target=f"key:{row.id}",
                     after=key_view(row))
    out.print(f"key {key_id} revoked")
