"""The `salescoach` command (see DESIGN.md, "Contracts")."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from bot.app import App, build_app
from bot.outbox import Post, PrintingFrontEnd
from bot.settings import Settings
from dialogs.errors import CoachError
from dialogs.render import COLONS, Renderer
from store.db import ConfigError

T = TypeVar("T")

cli = typer.Typer(
    help="salescoach — a sales coach for the six-step key-account method.",
    no_args_is_help=True,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema commands.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        raise typer.BadParameter(f"{name}: {err['msg']}") from exc


def _run(work: Callable[[App], Awaitable[T]], *, migrate: bool = True) -> T:
    """Build the app, run `work` in one event loop, close the app. Config errors exit 2."""
    settings = _settings()
    try:
        app = build_app(settings)
    except (CoachError, ConfigError) as exc:
        typer.secho(f"salescoach: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc

    async def main() -> T:
        try:
            if migrate:
                await app.start()
            return await work(app)
        finally:
            await app.close()

    try:
        return asyncio.run(main())
    except ConfigError as exc:  # e.g. a front end's settings that cannot work together
        typer.secho(f"salescoach: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


@cli.command()
def chat(
    user: Annotated[str, typer.Option(help="Who you are (your name or id).")] = "me",
    lang: Annotated[str | None, typer.Option(help="Language: en or zh.")] = None,
    org: Annotated[str, typer.Option(help="Company to work in; 'demo' after `salescoach demo`.")]
    = "console",
) -> None:
    """Talk to the coach in the terminal (interactive, or one line per turn from a pipe)."""
    from handlers.console import Console

    if lang is not None and lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")

    async def work(app: App) -> None:
        await Console(app.coach, user=user, org=org, lang=lang).run()

    try:
        _run(work)
    except KeyboardInterrupt:
        typer.echo("")


@cli.command()
def serve() -> None:
    """Run every configured front end (Slack, Telegram) and the HTTP server in one process."""
    from bot.serve import run

    _run(run)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest version."""

    async def work(app: App) -> None:
        await app.db.upgrade()
        typer.echo(f"database is up to date: {app.db!r}")

    _run(work, migrate=False)


@cli.command()
def demo(
    at: Annotated[str | None, typer.Option(help="Load relative to this time (ISO 8601).")] = None,
) -> None:
    """Load the demo company (a uniform maker selling to an oil field and a bus group)."""
    from bot.demo import load_demo

    now = _parse_at(at)

    async def work(app: App) -> None:
        summary = await app.db.run(load_demo, now=now)
        typer.echo(f"demo company loaded: {summary}")
        typer.echo("try: salescoach chat --org demo --user lilei")

    _run(work)


def _parse_at(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at)
    except ValueError as exc:
        raise typer.BadParameter(f"--at {at!r} is not an ISO date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- nudges and digests (bot/nudges.py, bot/digest.py) ------------------------------------------


class _DryRun(Exception):
    """Raised to roll a dry-run pass back after it has computed what it would post."""

    def __init__(self, result: object) -> None:
        super().__init__("dry run")
        self.result = result


async def _print_posts(posts: Sequence[Post], out_dir: Path) -> None:
    printer = PrintingFrontEnd(sys.stdout, out_dir)
    for post in posts:
        thread = f" (in the thread of {post.thread_of})" if post.thread_of else ""
        typer.echo(f"[{post.platform} · {post.kind}{thread}]")
        await printer.deliver(post.target, post.messages)


async def _print_or_deliver(app: App, posts: Sequence[Post], dry_run: bool) -> None:
    """A dry run prints the posts (files into a new temporary folder); otherwise what is
    queued is delivered."""
    if dry_run:
        await _print_posts(posts, Path(tempfile.mkdtemp(prefix="salescoach-")))
    else:
        await _deliver_queued(app)


async def _deliver_queued(app: App) -> None:
    """Deliver what is queued now: the console prints, configured messengers post."""
    from bot.outbox import OutboxWorker
    from bot.serve import configured_frontends

    fronts = configured_frontends(app)
    started = []
    try:
        for front in fronts:
            await front.start()
            started.append(front)
        printer = PrintingFrontEnd(sys.stdout, Path.cwd() / "salescoach-out")
        worker = OutboxWorker(app.db, {"console": printer, **{f.platform: f for f in fronts}},
                              clock=app.coach.clock)
        outcome = await worker.drain()
        typer.echo(f"delivered {outcome.sent}, retrying {outcome.retried}, "
                   f"failed {outcome.failed}")
    finally:
        for front in reversed(started):
            await front.stop()


@cli.command()
def nudges(
    at: Annotated[str | None, typer.Option(help="Run as if it were this time (ISO 8601).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print, post nothing, save nothing.")]
    = False,
) -> None:
    """Run one nudge pass now: stalled opportunities and overdue invoices to the team channel."""
    from bot import nudges as nudge_pass

    now = _parse_at(at)

    def dry(session: Session, renderer: Renderer) -> None:
        raise _DryRun(nudge_pass.run_pass(session, renderer, now, queue=False))

    async def work(app: App) -> None:
        result = nudge_pass.PassResult()
        if dry_run:
            try:
                await app.db.run(dry, app.renderer)
            except _DryRun as stop:
                assert isinstance(stop.result, nudge_pass.PassResult)
                result = stop.result
        else:
            result = await app.db.run(nudge_pass.run_pass, app.renderer, now)
        for name in result.skipped_orgs:
            typer.echo(f"{name}: outside working hours at {now.isoformat()}, nothing raised")
        for name in result.no_channel:
            typer.echo(f"{name}: no team channel bound (type `channel` in it), nothing raised")
        typer.echo(f"{len(result.raised)} new nudges, {len(result.posts)} posts")
        await _print_or_deliver(app, result.posts, dry_run)

    _run(work)


@cli.command()
def digest(
    at: Annotated[str | None, typer.Option(help="Run as if it were this time (ISO 8601).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print, post nothing, save nothing; "
                                          "the chart is written to a file.")] = False,
) -> None:
    """Run one digest pass now: each manager whose digest time has come gets theirs."""
    from bot import digest as digest_pass

    now = _parse_at(at)

    async def work(app: App) -> None:
        run = await digest_pass.run_pass(app.db, app.renderer, now, queue=not dry_run)
        for name in run.unreachable:
            typer.echo(f"{name}: no account on the org's messenger to send the digest to")
        typer.echo(f"{len(run.posts)} digests")
        await _print_or_deliver(app, run.posts, dry_run)

    _run(work)


# --- import / export / privacy (store/csvio.py, store/privacy.py) -------------------------------


forget_cli = typer.Typer(help="Erase a person's personal data (privacy requests).",
                         no_args_is_help=True)
cli.add_typer(forget_cli, name="forget")


class _CliError(Exception):
    """A problem to print (already translated) and exit 1 with."""


def _texts(lang: str | None) -> tuple[Renderer, str]:
    renderer = Renderer()
    chosen = lang or _settings().lang
    if chosen not in renderer.languages:
        raise typer.BadParameter("--lang must be en or zh")
    return renderer, chosen


def _org_and_user(session: Session, org: str | None, user: str | None, renderer: Renderer,
                  lang: str) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The company (--org: its key, or platform:key) and the acting user (--user)."""
    from sqlalchemy import select

    from store.csvio import _Owners
    from store.models import Org

    orgs = session.execute(select(Org.id, Org.platform, Org.external_id)
                           .order_by(Org.platform, Org.external_id)).all()
    listing = ", ".join(f"{p}:{k}" for _i, p, k in orgs)
    if org is None:
        if not orgs:
            raise _CliError(renderer.text(lang, "cli.no_orgs"))
        if len(orgs) > 1:
            raise _CliError(renderer.text(lang, "cli.org_needed", orgs=listing))
        org_id = orgs[0][0]
    else:
        platform, _, key = org.rpartition(":")
        found = [i for i, p, k in orgs if k == key and (not platform or p == platform)]
        if len(found) != 1:
            raise _CliError(renderer.text(lang, "cli.org_needed" if found else
                                          "cli.org_unknown", org=org, orgs=listing))
        org_id = found[0]
    if user is None:
        return org_id, None
    user_id, _ambiguous = _Owners(session, org_id).find(user)
    if user_id is None:
        raise _CliError(renderer.text(lang, "cli.user_unknown", user=user))
    return org_id, user_id


def _contact_id(session: Session, org_id: uuid.UUID, text: str, renderer: Renderer,
                lang: str) -> tuple[uuid.UUID, str]:
    """A contact by its full id or the first characters of it (as the cards show `#1a2b3c4d`)."""
    from sqlalchemy import select

    from store.models import Contact

    wanted = text.strip().lstrip("#").replace("-", "").lower()
    rows = [(i, n) for i, n in session.execute(
        select(Contact.id, Contact.name).where(Contact.org_id == org_id))
        if len(wanted) >= 6 and i.hex.startswith(wanted)]
    if not rows:
        raise _CliError(renderer.text(lang, "privacy.not_found", id=text))
    if len(rows) > 1:
        raise _CliError(renderer.text(lang, "privacy.ambiguous", id=text))
    return rows[0]


def _problem_line(renderer: Renderer, lang: str, problem: Any) -> str:
    if problem.row and problem.column:
        where = renderer.text(lang, "csv.where.cell", row=problem.row, column=problem.column)
    elif problem.row:
        where = renderer.text(lang, "csv.where.row", row=problem.row)
    else:
        where = renderer.text(lang, "csv.where.file")
    colon = COLONS.get(lang, ": ")
    return f"{where}{colon}{renderer.text(lang, f'csv.err.{problem.code}', **problem.params)}"


def _fail(message: str) -> NoReturn:
    typer.secho(f"salescoach: {message}", err=True, fg="red")
    raise typer.Exit(1)


def _run_or_fail(work: Callable[[App], Awaitable[T]]) -> T:
    """`_run`; a problem to print (`_CliError`) exits 1."""
    try:
        return _run(work)
    except _CliError as exc:
        _fail(str(exc))


def _run_in_org(org: str | None, user: str | None, renderer: Renderer, lang: str,
                act: Callable[[App, uuid.UUID, uuid.UUID | None], Awaitable[T]]) -> T:
    """`act(app, org_id, user_id)` for the company --org and the user --user (exit 1 when
    they are not found)."""

    async def work(app: App) -> T:
        org_id, user_id = await app.db.run(_org_and_user, org, user, renderer, lang)
        return await act(app, org_id, user_id)

    return _run_or_fail(work)


def _check_kind(kind: str, renderer: Renderer, lang: str) -> None:
    from store.csvio import KINDS

    if kind not in KINDS:
        _fail(str(renderer.text(lang, "cli.bad_kind")))


@contextmanager
def _csv_out(path: str | None, bom: bool) -> Iterator[TextIO]:
    """The file to write an export to, or standard output (path None); `bom` starts it
    with a BOM."""
    if path is None:
        if bom:
            sys.stdout.write("\ufeff")
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        yield out


OrgOption = Annotated[str | None, typer.Option(
    "--org", help="Company key (or platform:key); needed when the database has several.")]
UserOption = Annotated[str | None, typer.Option(
    "--user", help="Who you are (name or platform id): audit log, default owner on import.")]
LangOption = Annotated[str | None, typer.Option("--lang", help="Messages in en or zh.")]


@cli.command("import")
def import_command(
    kind: Annotated[str, typer.Argument(help="accounts, contacts, opportunities or invoices")],
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8, with or without BOM).",
                                         exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row, save nothing.")]
    = False,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Save the good rows even if some are rejected.")] = False,
    org: OrgOption = None,
    user: UserOption = None,
    lang: LangOption = None,
) -> None:
    """Import a CSV file: upsert by external_id; all or nothing unless --partial."""
    from store.csvio import ImportResult, Problem, import_file

    renderer, lang_ = _texts(lang)
    _check_kind(kind, renderer, lang_)

    def show(problem: Problem) -> None:
        typer.echo(_problem_line(renderer, lang_, problem))

    async def act(app: App, org_id: uuid.UUID, user_id: uuid.UUID | None) -> ImportResult:
        return await import_file(app.db, file, org_id=org_id, kind=kind,
                                 now=datetime.now(UTC), default_owner=user_id,
                                 dry_run=dry_run, partial=partial, on_problem=show,
                                 actor=user or "cli", user_id=user_id)

    result = _run_in_org(org, user, renderer, lang_, act)
    typer.echo(renderer.text(lang_, "csv.summary", kind=kind, rows=result.rows,
                             created=result.created, updated=result.updated,
                             unchanged=result.unchanged, rejected=result.rejected))
    if result.fatal:
        _fail(str(renderer.text(lang_, "csv.fatal")))
    if dry_run:
        typer.echo(renderer.text(lang_, "csv.dry_run"))
    elif result.committed:
        typer.echo(renderer.text(lang_, "csv.saved_partial" if result.rejected
                                 else "csv.saved"))
    else:
        _fail(str(renderer.text(lang_, "csv.rolled_back")))
    if result.rejected:
        raise typer.Exit(1)


@cli.command("export")
def export_command(
    kind: Annotated[str, typer.Argument(
        help="accounts, contacts, opportunities or invoices; or `contact` and an id")],
    args: Annotated[list[str] | None, typer.Argument(
        help="FILE.csv (default: print); for `contact`: ID [FILE.json]")] = None,
    headers: Annotated[str, typer.Option("--headers", help="Column headers: en or zh.")]
    = "en",
    bom: Annotated[bool, typer.Option("--bom", help="Start the file with a BOM (for Excel).")]
    = False,
    org: OrgOption = None,
    user: UserOption = None,
    lang: LangOption = None,
) -> None:
    """Export a kind as CSV (the import's columns), or everything stored about one contact."""
    import json

    from store.csvio import export_file
    from store.privacy import export_contact

    renderer, lang_ = _texts(lang)
    rest = list(args or [])
    if headers not in ("en", "zh"):
        raise typer.BadParameter("--headers must be en or zh")
    if kind == "contact":
        if not rest:
            _fail(str(renderer.text(lang_, "cli.contact_id_needed")))
        if len(rest) > 2:
            _fail(str(renderer.text(lang_, "cli.too_many_args")))

        def one(session: Session) -> tuple[str, dict[str, Any]]:
            org_id, user_id = _org_and_user(session, org, user, renderer, lang_)
            contact_id, _name = _contact_id(session, org_id, rest[0], renderer, lang_)
            return str(contact_id), export_contact(
                session, org_id=org_id, contact_id=contact_id, now=datetime.now(UTC),
                user_id=user_id, actor=user or "cli")

        async def work_one(app: App) -> tuple[str, dict[str, Any]]:
            return await app.db.run(one)

        contact_id, data = _run_or_fail(work_one)
        text = json.dumps(data, ensure_ascii=False, indent=2)
        if len(rest) == 2:
            Path(rest[1]).write_text(text + "\n", encoding="utf-8")
            typer.echo(renderer.text(lang_, "privacy.exported", id=contact_id, file=rest[1]))
        else:
            typer.echo(text)
        return
    _check_kind(kind, renderer, lang_)
    if len(rest) > 1:
        _fail(str(renderer.text(lang_, "cli.too_many_args")))

    async def act(app: App, org_id: uuid.UUID, user_id: uuid.UUID | None) -> int:
        with _csv_out(rest[0] if rest else None, bom) as out:
            return await export_file(app.db, out, org_id=org_id, kind=kind,
                                     now=datetime.now(UTC), headers=headers,
                                     actor=user or "cli", user_id=user_id)

    written = _run_in_org(org, user, renderer, lang_, act)
    if rest:
        typer.echo(renderer.text(lang_, "csv.exported", n=written, kind=kind, file=rest[0]))


@forget_cli.command("contact")
def forget_contact_command(
    contact: Annotated[str, typer.Argument(help="The contact's id (or its first 8 characters).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    org: OrgOption = None,
    user: UserOption = None,
    lang: LangOption = None,
) -> None:
    """Erase a contact's personal data; the record stays so the history still holds."""
    from store.privacy import forget_contact

    renderer, lang_ = _texts(lang)

    def find(session: Session) -> tuple[uuid.UUID, uuid.UUID | None, uuid.UUID, str]:
        org_id, user_id = _org_and_user(session, org, user, renderer, lang_)
        contact_id, name = _contact_id(session, org_id, contact, renderer, lang_)
        return org_id, user_id, contact_id, name

    def erase(session: Session, org_id: uuid.UUID, user_id: uuid.UUID | None,
              contact_id: uuid.UUID) -> tuple[dict[str, int], str]:
        from store.models import Contact

        changed = forget_contact(session, org_id=org_id, contact_id=contact_id,
                                 now=datetime.now(UTC), user_id=user_id, actor=user or "cli")
        found = session.get(Contact, contact_id)
        return changed, found.name if found else ""

    async def work(app: App) -> tuple[str, dict[str, int], str] | None:
        org_id, user_id, contact_id, name = await app.db.run(find)
        if not yes and not typer.confirm(str(renderer.text(lang_, "privacy.confirm",
                                                           id=contact_id, name=name))):
            return None
        changed, kept = await app.db.run(erase, org_id, user_id, contact_id)
        return str(contact_id), changed, kept

    outcome = _run_or_fail(work)
    if outcome is None:
        typer.echo(renderer.text(lang_, "privacy.aborted"))
        raise typer.Exit(1)
    contact_id, changed, kept = outcome
    linked = sum(v for k, v in changed.items() if k != "contacts")
    typer.echo(renderer.text(lang_, "privacy.forgotten", id=contact_id, name=kept,
                             changed=linked))


# --- doctor (bot/doctor.py) ------------------------------------------------------------------


@cli.command()
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Repair what needs no guess (legacy keys, "
                                      "open next steps of finished deals) and say what changed.")]
    = False,
    org: OrgOption = None,
    at: Annotated[str | None, typer.Option(help="Check as if it were this time (ISO 8601).")]
    = None,
    lang: LangOption = None,
) -> None:
    """Check the database against the invariants of the records; exit 1 if anything is wrong."""
    from bot import doctor as checks

    renderer, lang_ = _texts(lang)
    today = _parse_at(at).date()

    def examine(session: Session, app: App) -> tuple[list[checks.Problem], int]:
        org_id = _org_and_user(session, org, None, renderer, lang_)[0] if org else None
        found = checks.check(session, app.engine.flows, today, org_id)
        if fix:
            checks.fix(session, found)
        return found, checks.rule_count(app.engine.flows)

    async def work(app: App) -> tuple[list[checks.Problem], int, dict[Any, Any]]:
        found, rules = await app.db.run(examine, app)
        return found, rules, checks.column_labels(app.engine.flows)

    found, rules, labels = _run_or_fail(work)
    for problem in found:
        typer.echo(checks.describe(problem, renderer, lang_, labels))
    left = [p for p in found if not p.fixed]
    if not found:
        typer.echo(renderer.text(lang_, "doctor.clean", checks=rules))
    elif fix:
        typer.echo(renderer.text(lang_, "doctor.fixed", n=len(found) - len(left), left=len(left)))
    else:
        typer.echo(renderer.text(lang_, "doctor.summary", n=len(found),
                                 fixable=sum(p.fixable for p in found)))
    if left:
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cli()


if __name__ == "__main__":
    main()
